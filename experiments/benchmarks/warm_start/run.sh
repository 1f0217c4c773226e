#!/usr/bin/env bash
# Issue 31 on the GPU, resumable: the full grid's Llama-2-7B fp16 slice of one GPU type (21 cells:
# batch sizes 1..64 x chat_medium, chat_high, offline), continued from the committed store of that
# GPU type (GPU=h200, the default, or GPU=h100). The H200 store is complete (two sessions: 8 chat
# cells, then the other 13 on 4 engine starts): run again, it finds nothing to run. The H100 store
# holds the first 5 cells (one session's end cut the run): run again, it measures the other 16.
# Given an existing empty STORE directory it measures all 21. Run from the repo root:
#   [GPU=h100] bash experiments/benchmarks/warm_start/run.sh [STORE [KERNEL_CACHE_TGZ]]   (default /root/warm)
# The store starts as a copy of $GPU/store; copy it back here once the run has ended.
# A second argument, a .tgz of another machine's engine.vllm.compile_cache_dir, is unpacked there
# first (scripts/seed_kernel_cache.sh): a node of a cluster sharing that folder.
set -euo pipefail
gpu=${GPU:-h200}
store=${1:-/root/warm}
[ -d "$store" ] || cp -r "experiments/benchmarks/warm_start/$gpu/store" "$store"
[ -z "${2:-}" ] || bash scripts/seed_kernel_cache.sh "$2"
python -m orchestrator +sweep=full "gpu=$gpu" model=llama2_7b quantization=none "store.dir=$store"
