#!/usr/bin/env bash
# Start a Ray head node. Binds GCS, dashboard and the job API to 127.0.0.1 unless told otherwise:
#   RAY_HEAD_IP=10.0.0.5 RAY_DASHBOARD_HOST=127.0.0.1 bash scripts/cluster_head.sh [extra ray start args]
# Ray's job API has NO authentication: never expose the dashboard port to an untrusted network
# (reach it through `ssh -L 8265:127.0.0.1:8265 head`). GPU nodes report their GPUs and
# accelerator_type (e.g. H100, A800, T4) by themselves.
# PYTHON: the interpreter that has the project installed (default: python3 on PATH); the head runs
# on it and puts its directory first on PATH, so jobs' `python` is that interpreter too, whether
# or not its virtual environment is activated.
set -euo pipefail
PYTHON="${PYTHON:-$(command -v python3)}"
export PATH="$(dirname "$PYTHON"):$PATH"
: "${RAY_AUTH_MODE:=token}"; export RAY_AUTH_MODE   # token auth between nodes (~/.ray/auth_token)
[ -n "${RAY_AUTH_TOKEN:-}" ] || [ -f "$HOME/.ray/auth_token" ] ||
  "$PYTHON" -m ray.scripts.scripts get-auth-token --generate > /dev/null
exec "$PYTHON" -m ray.scripts.scripts start --head \
  --node-ip-address="${RAY_HEAD_IP:-127.0.0.1}" \
  --port="${RAY_PORT:-6379}" \
  --dashboard-host="${RAY_DASHBOARD_HOST:-127.0.0.1}" \
  --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" \
  --disable-usage-stats "$@"
