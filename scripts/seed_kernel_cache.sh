#!/usr/bin/env bash
# Start a fresh GPU machine as a node of a cluster whose nodes share engine.vllm.compile_cache_dir
# would: unpack a .tgz of another machine's cache folder (its kernel caches: triton/, flashinfer/,
# ...; torch_compile_cache/ may be left out) into this machine's. An H100's serves an H200 (both sm_90).
# FlashInfer's JIT modules in it serve only where this machine's FlashInfer files are older than them
# (ninja rebuilds on mtimes): a machine that installed FlashInfer after the tgz was made rebuilds them.
#   bash scripts/seed_kernel_cache.sh TGZ [CACHE_DIR]   (default: the option's default, ~/.cache/orchestrator/vllm)
# Made on the machine that filled it:  tar czf kernel_cache.tgz --exclude=torch_compile_cache -C ~/.cache/orchestrator/vllm .
set -euo pipefail
tgz=${1:?a .tgz of a compile_cache_dir}
cache=${2:-$HOME/.cache/orchestrator/vllm}
mkdir -p "$cache"
tar xzf "$tgz" -C "$cache"
echo "kernel caches from $tgz in $cache: $(du -sh "$cache" | cut -f1)"
