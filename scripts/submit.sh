#!/usr/bin/env bash
# Submit a sweep as a Ray job, follow its logs, fetch its results into outputs/:
#   bash scripts/submit.sh +sweep=full gpu=h100
#   bash scripts/submit.sh -m batch_size=1,8,32 workload=chat_medium
# The same with the plain Ray CLI (results then stay on the head, in ~/orchestrator-results/):
#   ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
#     python -m orchestrator +sweep=full 'store.dir=${oc.env:HOME}/orchestrator-results/${name}'
# PYTHON: the interpreter that has the project installed (default: python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m orchestrator.submit --address "${RAY_DASHBOARD_ADDRESS:-http://127.0.0.1:8265}" -- "$@"
