#!/usr/bin/env bash
# Join a worker node to a head:   bash scripts/cluster_worker.sh HEAD_IP:6379 [extra ray start args]
# Copy the head's ~/.ray/auth_token to this node first (token authentication).
# Test a mixed cluster on one machine with logical GPUs:
#   bash scripts/cluster_worker.sh 127.0.0.1:6379 --num-gpus=1 --resources='{"accelerator_type:T4": 1}'
set -euo pipefail
head="${1:?usage: cluster_worker.sh HEAD_IP:PORT [ray start args]}"; shift
: "${RAY_AUTH_MODE:=token}"; export RAY_AUTH_MODE
exec ray start --address="$head" --node-ip-address="${RAY_NODE_IP:-127.0.0.1}" --disable-usage-stats "$@"
