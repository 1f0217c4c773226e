"""Issue 31 on the GPU: warm vLLM server starts served by spare processes, and the GPU duty of a
sweep whose engines serve two cells each, read from the run's store.

    python experiments/benchmarks/warm_start/analyze.py STORE [REFERENCE_STORE] > analysis.md

1. **GPU time**: the report's own section (``report.gpu_time``): one row per engine start with its
   phases from vLLM's log (``(spare)`` marks a start a spare process served) and the sweep's duty.
2. **Starts and duty, several ways**: the warm starts a spare served (seconds from launch to ready),
   and the duty (measured windows over GPU time) counted as the report counts it (engine starts +
   cell walls), without each machine's first start (the first on each Ray node: its kernels
   compiled from nothing, a cold machine, not a warm start), each machine alone (a sweep resumed on
   another machine pays a cold start on each), and over each machine's span from its
   first launch to its last cell's end (engine stops, the gaps between tasks and the scheduling
   included: a lower bound).
3. **The same cells elsewhere** (with ``REFERENCE_STORE``): each cell's tok/s and J/token against
   the reference store's ok row of the same model, quantization, GPU type, workload and batch size
   (another machine of the same GPU type): whether a spare importing beside the measured window
   moves what is measured.
"""
from __future__ import annotations

import sys
from typing import List, Optional

import numpy as np
import pandas as pd

from orchestrator.analysis import gpu_time
from orchestrator.analysis.dataset import read_sweep
from orchestrator.report import gpu_time as gpu_time_section
from orchestrator.store.schema import ENGINE_START_KEY, ENGINE_START_S, WINDOW_S

SAME_CELL = ["model", "quantization", "gpu", "workload", "batch_size"]
METRICS = {"output_throughput_tok_s": "tok/s", "energy_per_1k_output_tokens_j": "J/1k tokens",
           "mean_power_w": "mean power W"}


def value_range(values: pd.Series, fmt: str) -> str:
    """``low–high`` of the values, or the one value where both print the same."""
    low, high = format(values.min(), fmt), format(values.max(), fmt)
    return low if low == high else f"{low}–{high}"


def starts_and_duty(runs: pd.DataFrame, starts: pd.DataFrame) -> List[str]:
    spare = starts[starts["from_spare"] == True]  # noqa: E712 - None where the log had no answer
    out = ["## Starts and duty, several ways", ""]
    if not spare.empty:
        out.append(f"- **{len(spare)} warm starts served by a spare**: " + ", ".join(f"{s:.1f}" for s in spare["total_s"])
                   + f" s from launch to ready (median {spare['total_s'].median():.1f} s; frontend "
                   f"{value_range(spare['frontend_s'], '.2f')} s, torch.compile "
                   f"{value_range(spare['compile_s'], '.1f')} s, warm-up {value_range(spare['warmup_s'], '.0f')} s); "
                   f"the worker's whole start "
                   f"(GPU check and memory wait included): " + ", ".join(f"{s:.1f}" for s in spare[ENGINE_START_S]) + " s")
    measured = runs[runs["cell_wall_s"].notna()]
    start_of = measured[list(ENGINE_START_KEY)].astype(str).agg("|".join, axis=1)  # one value per engine start
    cold = start_of.isin(set(start_of[measured.groupby("node_id")["started_unix_s"].idxmin()]))  # each machine's first
    span = sum(float(rows["finished_unix_s"].max()) - float(rows["started_unix_s"].min())
               + float(rows.sort_values("started_unix_s")[ENGINE_START_S].iloc[0])
               for _, rows in measured.groupby("node_id"))  # each machine's first launch to its last cell's end
    for name, figures in gpu_time.duty(measured).items():  # the report's own figures, all starts and warm ones
        o, warm = figures["overall"], gpu_time.duty(measured[~cold]).get(name)
        out.append(f"- duty as the report counts it: windows {o['window_s']:.0f} s of {o['gpu_held_s']:.0f} s (engine "
                   f"starts + cell walls): **{o['duty']:.1%}** over {o['cells']} cells on {o['engine_starts']} engine starts")
        if warm is not None:  # none where every start was a machine's first
            w = warm["overall"]
            out.append(f"- without each machine's first start ("
                       f"{', '.join(f'{x:.1f}' for x in measured[cold][ENGINE_START_S].unique())} s): windows "
                       f"{w['window_s']:.0f} s of {w['gpu_held_s']:.0f} s: **{w['duty']:.1%}** over {w['cells']} cells on "
                       f"{w['engine_starts']} warm starts")
        for node, rows in measured.sort_values("started_unix_s").groupby("node_id", sort=False):
            m = gpu_time.duty(rows)[name]["overall"]  # one machine alone, its first start included
            first = pd.Timestamp(float(rows["started_unix_s"].min()), unit="s").strftime("%Y-%m-%d %H:%M")
            out.append(f"- one machine alone (Ray node {str(node)[:8]}, first cell {first} UTC), its first start "
                       f"included: windows {m['window_s']:.0f} s of {m['gpu_held_s']:.0f} s: **{m['duty']:.1%}** over "
                       f"{m['cells']} cells on {m['engine_starts']} engine starts")
        out += [f"- over each machine's span, its first launch to its last cell's end ({span:.0f} s in all; engine "
                f"stops, the gaps between tasks and the scheduling included): **{o['window_s'] / span:.1%}**", ""]
    return out


def same_cells(runs: pd.DataFrame, reference: pd.DataFrame) -> List[str]:
    ref = reference[reference["status"] == "ok"]
    out = ["## The same cells on another machine", "",
           "Each cell against the reference store's ok row of the same model, quantization, GPU type, workload and "
           "batch size (the newest where there are several).", "",
           "| cell | " + " | ".join(f"{v} here | reference | diff" for v in METRICS.values()) + " |",
           "|---|" + "---|---|---|" * len(METRICS)]
    diffs = {m: [] for m in METRICS}
    for row in runs[runs["status"] == "ok"].sort_values("started_unix_s").itertuples():
        match = ref
        for k in SAME_CELL:
            match = match[match[k] == getattr(row, k)]
        other: Optional[pd.Series] = match.sort_values("started_unix_s").iloc[-1] if not match.empty else None
        parts = []
        for m in METRICS:
            here = float(getattr(row, m))
            there = float(other[m]) if other is not None else float("nan")
            d = here / there - 1 if there == there and there else float("nan")
            if d == d:
                diffs[m].append(d)
            parts.append(f"{here:.4g} | {there:.4g} | {d:+.1%}" if d == d else f"{here:.4g} | – | –")
        out.append(f"| {row.model}/{row.quantization}/{row.gpu}/bs{row.batch_size}/{row.workload} | " + " | ".join(parts) + " |")
    out.append("")
    for m, v in METRICS.items():
        if diffs[m]:
            out.append(f"- {v}: {len(diffs[m])} cells, median {np.median(diffs[m]):+.1%} "
                       f"(from {min(diffs[m]):+.1%} to {max(diffs[m]):+.1%})")
    return out + [""]


def main(path: str, reference: Optional[str] = None) -> int:
    runs = read_sweep(path).runs
    starts = gpu_time.engine_starts(runs)
    if starts.empty or runs[WINDOW_S].isna().all():
        print(f"{path} holds no measured cells", file=sys.stderr)
        return 1
    lines = ["# Warm starts and GPU duty: analysis", "",
             "Generated by `experiments/benchmarks/warm_start/analyze.py` from the store beside it.", ""]
    lines += gpu_time_section.section(starts, gpu_time.duty(runs)) + starts_and_duty(runs, starts)
    if reference:
        lines += same_cells(runs, read_sweep(reference).runs)
    print("\n".join(lines).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
