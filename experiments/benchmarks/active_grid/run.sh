#!/usr/bin/env bash
# Issue 31 on the GPU, resumable: continue the active sweep of the full grid's H100 x Llama-2-7B
# half from the committed store, then check 10 of its predicted cells. Run from the repo root:
#   bash experiments/benchmarks/active_grid/run.sh [STORE [KERNEL_CACHE_TGZ]]     (default /root/active_grid)
# The store starts as a copy of h100/store; copy it back here once the run has ended.
set -euo pipefail
# A second argument, a .tgz of another machine's engine.vllm.compile_cache_dir, is unpacked there
# first (scripts/seed_kernel_cache.sh): the fresh machine's first start skips the kernel builds it
# holds (FlashInfer's only where this machine's FlashInfer is older: README, "Where it stands").
store=${1:-/root/active_grid}
[ -d "$store" ] || cp -r experiments/benchmarks/active_grid/h100/store "$store"
[ -z "${2:-}" ] || bash scripts/seed_kernel_cache.sh "$2"
# the H200 study's calibration (experiments/h200_study/calibration/calibration.json) without its idle power
cal=(engine.simulated.busy_power_floor=0.579295 engine.simulated.compute_efficiency=0.330858
     engine.simulated.memory_efficiency=0.835318 engine.simulated.quantized_weight_efficiency.awq=0.327016
     engine.simulated.quantized_weight_efficiency.gptq=0.177499 engine.simulated.step_overhead_s=0.00125819)
grid=(+sweep=full gpu=h100 model=llama2_7b "${cal[@]}" "store.dir=$store")
# once the check has begun the active sweep is over: run again, it would refit its record with the
# check's measured cells (an active sweep counts every ok row of the store as measured)
[ -f "$store/active_check.json" ] || python -m orchestrator "${grid[@]}" sweep.strategy=active sweep.budget=0.25
python -m orchestrator "${grid[@]}" sweep.strategy=check sweep.check_cells=10
