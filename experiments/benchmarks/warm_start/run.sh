#!/usr/bin/env bash
# Issue 31 on the GPU, resumable: the full grid's H200 x Llama-2-7B fp16 slice (21 cells: batch
# sizes 1..64 x chat_medium, chat_high, offline), continued from the committed store. It ran in two
# sessions (8 chat cells, then the other 13 on 4 engine starts) and the committed store is complete:
# run again, it finds nothing to run; given an existing empty STORE directory it measures all 21.
# Run from the repo root:  bash experiments/benchmarks/warm_start/run.sh [STORE [KERNEL_CACHE_TGZ]]   (default /root/warm)
# The store starts as a copy of h200/store; copy it back here once the run has ended.
# A second argument, a .tgz of another machine's engine.vllm.compile_cache_dir, is unpacked there
# first (scripts/seed_kernel_cache.sh): a node of a cluster sharing that folder.
set -euo pipefail
store=${1:-/root/warm}
[ -d "$store" ] || cp -r experiments/benchmarks/warm_start/h200/store "$store"
[ -z "${2:-}" ] || bash scripts/seed_kernel_cache.sh "$2"
python -m orchestrator +sweep=full gpu=h200 model=llama2_7b quantization=none "store.dir=$store"
