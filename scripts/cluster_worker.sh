#!/usr/bin/env bash
# Join a worker node to a head:   bash scripts/cluster_worker.sh HEAD_IP:6379 [extra ray start args]
# Copy the head's ~/.ray/auth_token to this node first (token authentication).
# The worker advertises the address through which it reaches the head (the source address of
# its route to HEAD_IP), so the head and other nodes can fetch results from it; 127.0.0.1 only
# when the head is on loopback. Set RAY_NODE_IP to choose another.
# PYTHON: the interpreter that has the project installed (default: python3 on PATH).
# Test a mixed cluster on one machine with logical GPUs:
#   bash scripts/cluster_worker.sh 127.0.0.1:6379 --num-gpus=1 --resources='{"accelerator_type:T4": 1}'
set -euo pipefail
head="${1:?usage: cluster_worker.sh HEAD_IP:PORT [ray start args]}"; shift
PYTHON="${PYTHON:-$(command -v python3)}"
export PATH="$(dirname "$PYTHON"):$PATH"
: "${RAY_AUTH_MODE:=token}"; export RAY_AUTH_MODE
node_ip="${RAY_NODE_IP:-$("$PYTHON" -m orchestrator.driver.netaddr "$head")}"
exec "$PYTHON" -m ray.scripts.scripts start --address="$head" --node-ip-address="$node_ip" \
  --disable-usage-stats "$@"
