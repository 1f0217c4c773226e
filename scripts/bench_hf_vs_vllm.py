"""Benchmark: the hf engine (transformers static batching) vs vLLM, same model shape, same GPU.

    python scripts/bench_hf_vs_vllm.py --gpu h100 [--out experiments/benchmarks] [--store DIR]

Runs the orchestrator itself, one sweep, on the GPU machine (``PYTHONPATH=/root/site:$PWD``):

    python -m orchestrator -m engine=hf,vllm batch_size=1,8,32 workload=offline model=llama2_7b \
        gpu=<gpu> sampler=nvml engine.hf.dtype=float16 workload.input.mean_tokens=128 \
        workload.output.mean_tokens=128 workload.num_batches=4 store.dir=<store>

Both engines get random (dummy) weights of Llama-2-7B in fp16 (vLLM's dtype for this config; hf
pinned to float16 so the two compute alike), static batches of exactly the batch size, 128 input
and 128 output tokens, one warm-up batch, energy from the NVML counter over the measured window.
The hf cells share one engine start, and so do the vLLM cells (~1-2 min). Writes
``hf_vs_vllm_<gpu>.md`` (side-by-side table: output tok/s and J per output token, gross and net
of the idle baseline) and ``hf_vs_vllm_<gpu>.json`` (every row) into ``--out``.
``--model tiny --engines hf --sampler none`` runs the same path on a CPU (no energy: a dry check).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("engine", "batch_size", "status", "output_throughput_tok_s", "energy_per_1k_output_tokens_j",
           "net_energy_per_1k_output_tokens_j", "mean_power_w", "ttft_p50_ms", "tpot_p50_ms", "window_s",
           "engine_start_s", "energy_source", "short_window", "energy_mismatch", "token_count_mismatch",
           "gpu_name", "engine_versions", "engine_extra", "error")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpu", required=True, choices=("h100", "h200"), help="gpu config group option")
    p.add_argument("--out", default=str(ROOT / "experiments" / "benchmarks"), help="directory for .md and .json")
    p.add_argument("--store", default=None, help="the sweep's Parquet store (default: a temporary directory)")
    p.add_argument("--model", default="llama2_7b")
    p.add_argument("--engines", default="hf,vllm")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--num-batches", type=int, default=4, help="measured static batches per cell")
    p.add_argument("--sampler", default="nvml", choices=("nvml", "none"))
    p.add_argument("--timeout-s", type=float, default=900.0, help="the whole sweep's wall-clock limit")
    return p.parse_args(argv)


def sweep_command(args: argparse.Namespace, store: Path) -> list:
    return [sys.executable, "-m", "orchestrator", "-m", f"engine={args.engines}", f"batch_size={args.batch_sizes}",
            "workload=offline", f"model={args.model}", f"gpu={args.gpu}", f"sampler={args.sampler}",
            "engine.hf.dtype=float16", "workload.input.mean_tokens=128", "workload.output.mean_tokens=128",
            f"workload.num_batches={args.num_batches}", "workload.warmup_batches=1",
            f"name=hf_vs_vllm_{args.gpu}", f"store.dir={store}", "dispatch.progress=false"]


def run_sweep(cmd: list, timeout_s: float) -> float:
    """Runs the sweep, streaming its output; -> wall seconds. A failed cell is data, not an error."""
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, check=True, timeout=timeout_s)
    return time.monotonic() - t0


def collect(store: Path) -> list:
    """One dict per cell (``COLUMNS``), sorted by batch size then engine."""
    sys.path.insert(0, str(ROOT))
    from orchestrator.store.sweep_store import load

    runs = load(str(store)).runs.to_pylist()
    rows = [{c: r.get(c) for c in COLUMNS} for r in runs]
    for r in rows:
        for src, dst in (("energy_per_1k_output_tokens_j", "j_per_token"),
                         ("net_energy_per_1k_output_tokens_j", "net_j_per_token")):
            r[dst] = r[src] / 1e3 if r[src] is not None else None
    return sorted(rows, key=lambda r: (r["batch_size"], r["engine"]))


def _f(x, fmt: str) -> str:
    return "–" if x is None or x != x else format(x, fmt)


def _ratio(a, b) -> str:
    return "–" if not a or not b or a != a or b != b else f"{a / b:.2f}×"


def markdown(rows: list, meta: dict) -> str:
    """Side-by-side table per batch size, then a per-cell detail table."""
    by = {(r["batch_size"], r["engine"]): r for r in rows}
    sizes = sorted({r["batch_size"] for r in rows})
    out = [f"# hf vs vLLM: {meta['model']} on {meta['gpu_name'] or meta['gpu']}", "",
           f"Offline static batches, 128 in / 128 out, fp16, {meta['num_batches']} measured batches per cell "
           f"(+1 warm-up); energy: NVML counter over the measured window. Sweep wall time "
           f"{meta['sweep_wall_s']:.0f} s. Command: `{meta['command']}`", "",
           "| batch | hf tok/s | vLLM tok/s | vLLM/hf | hf J/token | vLLM J/token | hf/vLLM | "
           "hf net J/token | vLLM net J/token |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for b in sizes:
        h, v = by.get((b, "hf"), {}), by.get((b, "vllm"), {})
        ht, vt = h.get("output_throughput_tok_s"), v.get("output_throughput_tok_s")
        hj, vj = h.get("j_per_token"), v.get("j_per_token")
        out.append(f"| {b} | {_f(ht, '.1f')} | {_f(vt, '.1f')} | {_ratio(vt, ht)} | {_f(hj, '.3f')} | "
                   f"{_f(vj, '.3f')} | {_ratio(hj, vj)} | {_f(h.get('net_j_per_token'), '.3f')} | "
                   f"{_f(v.get('net_j_per_token'), '.3f')} |")
    out += ["", "| engine | batch | status | mean W | TTFT p50 ms | TPOT p50 ms | window s | engine start s | flags |",
            "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        flags = [k for k in ("short_window", "energy_mismatch", "token_count_mismatch") if r.get(k)]
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {(r['error'] or '')[:80]}"
        out.append(f"| {r['engine']} | {r['batch_size']} | {status} | {_f(r['mean_power_w'], '.0f')} | "
                   f"{_f(r['ttft_p50_ms'], '.1f')} | {_f(r['tpot_p50_ms'], '.2f')} | {_f(r['window_s'], '.1f')} | "
                   f"{_f(r['engine_start_s'], '.0f')} | {', '.join(flags)} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="hf_vs_vllm_"))
    cmd = sweep_command(args, store)
    print("running:", " ".join(cmd[1:]), flush=True)
    wall_s = run_sweep(cmd, args.timeout_s)
    rows = collect(store)
    gpu_names = {r["gpu_name"] for r in rows if r.get("gpu_name")}
    meta = {"gpu": args.gpu, "gpu_name": ", ".join(sorted(gpu_names)), "model": args.model,
            "num_batches": args.num_batches, "sweep_wall_s": wall_s, "store": str(store),
            "command": " ".join(["python", *cmd[1:-2]])}
    stem = out / f"hf_vs_vllm_{args.gpu}"
    (stem.with_suffix(".json")).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    (stem.with_suffix(".md")).write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    print(f"wrote {stem}.md and {stem}.json (store: {store})")
    return 0 if rows and all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
