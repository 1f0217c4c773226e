#!/usr/bin/env bash
# Stop the Ray processes of this machine (head or worker). PYTHON: as in cluster_head.sh.
PYTHON="${PYTHON:-$(command -v python3)}"
exec "$PYTHON" -m ray.scripts.scripts stop "$@"
