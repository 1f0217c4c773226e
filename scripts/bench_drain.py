"""Benchmark: an overloaded chat cell ends within its bound (bounded drain).

    export PYTHONPATH=/root/site:$PWD
    python scripts/bench_drain.py --out experiments/benchmarks/drain_h200 [--gpu h200] [--batch-size 1]
        [--workload chat_high] [--duration-s 20]

Runs one cell with ``python -m orchestrator`` (``engine=vllm``, ``sampler=nvml``; at batch 1 and
50 req/s a 7B model cannot keep up, so the queue grows through the window), times the command,
and reads the cell's row back. The bound (issue 12): engine start + idle baseline + warm-up +
window + drain limit + 10 s; the cell's time is its engine start + its in-cell wall time (idle
baseline, warm-up, window, drain) + the engine's stop. Writes ``results.json`` and ``results.md``
under ``--out``; the store under ``--work``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SLACK_S = 10.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--work", default=Path("/tmp/bench_drain"), type=Path)
    p.add_argument("--gpu", default="h200")
    p.add_argument("--model", default="llama2_7b")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workload", default="chat_high")
    p.add_argument("--duration-s", type=float, default=20.0)
    p.add_argument("--engine", default="vllm", help="vllm on the GPU; simulated to try the script anywhere")
    return p.parse_args(argv)


def cell_times(row: Dict, sampler_idle_s: float) -> Dict:
    """The bound's terms and the cell's own time (s) from its runs row."""
    extra = json.loads(row["engine_extra"] or "{}")
    warmup_s = row["window_start_s"] - extra["client_t_base_s"] if "client_t_base_s" in extra else 0.0
    stop = extra.get("stop") or {}  # what engine.stop() found (results.with_stop_report)
    stop_s = float(stop.get("stop_s") or 0.0) + float(stop.get("gpu_memory_free_wait_s") or 0.0)
    bound = row["engine_start_s"] + sampler_idle_s + warmup_s + row["window_s"] + row["drain_timeout_s"] + SLACK_S
    cell = row["engine_start_s"] + row["cell_wall_s"] + stop_s
    return {"engine_start_s": row["engine_start_s"], "idle_baseline_s": sampler_idle_s, "warmup_s": warmup_s,
            "window_s": row["window_s"], "drain_timeout_s": row["drain_timeout_s"], "drain_s": row["drain_s"],
            "stop_s": stop_s, "cell_s": cell, "bound_s": bound, "within_bound": cell <= bound}


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.work / "store"
    sampler = "nvml" if args.engine == "vllm" else "auto"
    cmd = [sys.executable, "-m", "orchestrator", f"model={args.model}", f"gpu={args.gpu}", f"engine={args.engine}",
           f"sampler={sampler}", f"workload={args.workload}", f"batch_size={args.batch_size}",
           f"workload.duration_s={args.duration_s}", f"store.dir={store}", "name=bench_drain", "dispatch.progress=false"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    (args.work / "orchestrator.log").write_text(proc.stdout + proc.stderr)
    from orchestrator.driver.grid import config_of
    from orchestrator.store.sweep_store import load

    rows = load(str(store)).runs.to_pylist()
    row = rows[-1]
    idle = config_of(cmd[3:10]).sampler.idle_baseline_s if row["energy_source"] == "nvml" else 0.0
    res = {"command": " ".join(cmd[1:]), "rc": proc.returncode, "command_wall_s": wall, "status": row["status"],
           "error": row["error"], "saturated": row["saturated"], "n_requests_measured": row["n_requests_measured"],
           "n_requests_ok": row["n_requests_ok"], "n_requests_cancelled": row["n_requests_cancelled"],
           "offered_rate_rps": row["offered_rate_rps"], "request_throughput_rps": row["request_throughput_rps"],
           "ttft_p50_ms": row["ttft_p50_ms"], "energy_j": row["energy_j"], **cell_times(row, idle)}
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    (args.out / "results.md").write_text(markdown(res))
    print(markdown(res))
    return 0 if res["within_bound"] and row["status"] == "ok" else 1


def markdown(r: Dict) -> str:
    return (f"# Bounded drain: one overloaded chat cell\n\n`{r['command']}`\n\n"
            f"Status **{r['status']}**, saturated {r['saturated']}: {r['n_requests_measured']} measured requests "
            f"offered at {r['offered_rate_rps']:.0f} req/s, {r['request_throughput_rps']:.2f} req/s completed in the "
            f"window, {r['n_requests_cancelled']} cancelled at the drain limit; TTFT p50 (completed) "
            f"{r['ttft_p50_ms']:.0f} ms.\n\n"
            "| term | s |\n|---|---:|\n"
            + "".join(f"| {k} | {r[k]:.1f} |\n" for k in ("engine_start_s", "idle_baseline_s", "warmup_s", "window_s",
                                                          "drain_timeout_s", "drain_s", "stop_s"))
            + f"| **cell (start + in-cell + stop)** | **{r['cell_s']:.1f}** |\n"
            f"| bound (start + idle + warm-up + window + drain limit + {SLACK_S:.0f}) | {r['bound_s']:.1f} |\n"
            f"| whole command (Ray start, driver) | {r['command_wall_s']:.1f} |\n\n"
            f"Within the bound: **{r['within_bound']}**.\n")


if __name__ == "__main__":
    sys.exit(main())
