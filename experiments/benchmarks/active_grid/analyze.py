"""Issue 31 on the GPU: an active sweep of one GPU type and one model, read from its store.

    python experiments/benchmarks/active_grid/analyze.py STORE > analysis.md

1. **Rounds**: the cells each round measured (``active_sweep.json``), and why it stopped (empty
   while it is still going: a resumed sweep continues).
2. **Predictions**: how many cells are predicted, from which level, and the median relative
   half-width of their 90% intervals per metric.
3. **Engine starts**: one row per start (the runs rows that share one, ``schema.ENGINE_START_KEY``):
   its cells, their windows, and the phases of the start from vLLM's log
   (``engines.vllm.start_phases``: launch = frontend + the engine core's boot, model setup,
   torch.compile and whether its cache served it, warm-up after graph capture, the rest, ready).
4. **GPU duty** (``driver.gpu_duty``): measured windows over the GPU-held time of the rows.
5. **Check** (``sweep.strategy=check``, where the store has ``active_check.json``): each checked
   cell's prediction and interval against its measurement, and the summary.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Dict, List, Mapping

import numpy as np

from orchestrator.driver.gpu_duty import gpu_duty
from orchestrator.engines.vllm.start_phases import start_phases_of
from orchestrator.search.active_check import read_check
from orchestrator.search.active_sweep import METRICS, read_record
from orchestrator.store.schema import ENGINE_START_KEY
from orchestrator.store.sweep_store import Store, load

SHORT = {"output_throughput_tok_s": "tok/s", "energy_per_output_token_j": "J/token"}


def _f(x, fmt: str = "{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def rounds(record, labels: Mapping[str, str]) -> List[str]:
    out = ["## Rounds", "", f"{record.launchable} launchable cells, budget {record.budget_cells} "
           f"({record.budget_fraction:.0%}); stopped: {record.stopped or '(not yet: resume to continue)'}", "",
           "| round | cells measured |", "|---|---|"]
    for i, r in enumerate(record.rounds, 1):
        out.append(f"| {i} | {', '.join(labels.get(k, k) for k in r['cells'])} |")
    return out + [""]


def predictions(record) -> List[str]:
    predicted = [c for c in record.cells if c.source == "predicted"]
    levels = Counter(c.level for c in predicted)
    out = ["## Predictions", "", f"{len(predicted)} cells predicted, {sum(c.source == 'measured' for c in record.cells)} "
           f"measured, {sum(c.source == 'failed' for c in record.cells)} failed; levels: "
           + ", ".join(f"{k} {n}" for k, n in sorted(levels.items())), ""]
    for m in METRICS:
        halves = [(c.values[f"{m}_high"] - c.values[f"{m}_low"]) / (2 * c.values[m]) for c in predicted
                  if c.values.get(m) and c.values.get(f"{m}_low") is not None and c.values.get(f"{m}_high") is not None]
        if halves:
            out.append(f"- {SHORT[m]}: median 90% half-width ±{np.median(halves):.1%} (widest ±{max(halves):.1%})")
    return out + [""]


PHASES = ("total_s", "frontend_s", "core_boot_s", "model_setup_s", "compile_s", "warmup_s", "init_other_s", "ready_s")


def starts(rows: List[Dict]) -> List[str]:
    groups: Dict[tuple, List[Dict]] = {}
    for r in sorted(rows, key=lambda r: r["started_unix_s"] or 0):
        if r.get("cell_wall_s") is not None:
            groups.setdefault(tuple(r.get(k) for k in ENGINE_START_KEY), []).append(r)
    out = ["## Engine starts", "",
           "Seconds. launch = frontend (our launch -> the engine-core process created) + core boot (-> its first "
           "log line); compile: torch.compile (c: served by the compile cache); warm-up: after graph capture.", "",
           "| first cell | engine | cells | windows s | start s | " + " | ".join(p[:-2].replace("_", " ") for p in PHASES)
           + " |", "|---|---|---|---|---|" + "---|" * len(PHASES)]
    totals: Dict[str, List[float]] = {}
    for members in groups.values():
        first = members[0]
        p = start_phases_of(first.get("engine_extra"))
        label = f"{first['quantization']}/{first['workload']}/bs{first['batch_size']}"
        values = []
        for name in PHASES:
            v = getattr(p, name) if p is not None else None
            text = _f(v)
            if name == "compile_s" and p is not None and p.compile_cached:
                text += " c"
            values.append(text)
            if v is not None and first["engine"] == "vllm":
                totals.setdefault(name, []).append(v)
        windows = sum(r["window_s"] or 0 for r in members)
        out.append(f"| {label} | {first['engine']} | {len(members)} | {windows:.0f} | {first['engine_start_s']:.1f} | "
                   + " | ".join(values) + " |")
    if totals:
        out += ["", "vLLM starts, median (min–max) s: " + "; ".join(
            f"{k[:-2].replace('_', ' ')} {np.median(v):.1f} ({min(v):.1f}–{max(v):.1f})" for k, v in totals.items())]
    return out + [""]


def duty(rows: List[Dict], sweep: str) -> List[str]:
    d = gpu_duty(rows, sweep)
    if d is None:
        return []
    o = d["overall"]
    return ["## GPU duty", "", f"{o['cells_ok']} ok cells of {o['cells']} on {o['engine_starts']} engine starts: windows "
            f"{o['window_s']:.0f} s over {o['gpu_held_s']:.0f} s GPU-held (starts {o['engine_start_s']:.0f} s + cell walls "
            f"{o['cell_wall_s']:.0f} s): **duty {o['duty']:.1%}** (an upper bound: engine stops and scheduling between "
            "tasks are not in the rows)", ""]


def check(store: Store) -> List[str]:
    c = read_check(store)
    if c is None:
        return ["## Check", "", "No `active_check.json` yet (`sweep.strategy=check` measures predicted cells).", ""]
    out = ["## Check", "", f"{len(c.cells)} of {c.predicted_cells} predicted cells drawn (seed {c.seed}).", "",
           "| cell | level | " + " | ".join(f"{SHORT[m]} predicted [90%] | measured | error" for m in METRICS) + " |",
           "|---|---|" + "---|---|---|" * len(METRICS)]
    for cell in c.cells:
        parts = []
        for m in METRICS:
            v = cell.values
            inside = {True: "", False: " ✗", None: ""}[cell.covered.get(m)]
            parts.append(f"{v.get(m):.4g} [{v.get(f'{m}_low'):.4g}–{v.get(f'{m}_high'):.4g}] | "
                         f"{_f(cell.measured.get(m), '{:.4g}')} | {_f(cell.error.get(m), '{:+.1%}')}{inside}")
        out.append(f"| {cell.label} ({cell.status or 'not run'}) | {cell.level} | " + " | ".join(parts) + " |")
    out.append("")
    for m, s in c.summary.items():
        if s.get("n"):
            out.append(f"- {SHORT[m]}: {int(s['n'])} measured, median |error| {s['median_abs_error']:.1%} (max "
                       f"{s['max_abs_error']:.1%}), coverage {s['coverage']:.0%}, median half-width "
                       f"±{s['median_half_width']:.1%}")
    return out + [""]


def main(path: str) -> int:
    store = Store.open(path)
    record = read_record(store)
    if record is None:
        print(f"{path} holds no active_sweep.json", file=sys.stderr)
        return 1
    rows = load(path).runs.to_pylist()
    labels = {c.cell_id: c.label for c in record.cells}
    sweep = json.loads(store.read_text("sweep.json") or "{}").get("name", record.name)
    lines = [f"# Active sweep `{record.name}`: analysis", "", "Generated by `experiments/benchmarks/active_grid/analyze.py`"
             " from the store beside it.", ""]
    lines += rounds(record, labels) + predictions(record) + starts(rows) + duty(rows, sweep) + check(store)
    print("\n".join(lines).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
