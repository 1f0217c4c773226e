"""Replay benchmark of active measurement (issue 31): the H200 study's store is the oracle.

    python scripts/bench_active_replay.py [--store experiments/h200_study/store]
        [--sim-store experiments/h200_study/sim_store] [--budget 0.25] [--seeds 20]
        [--out experiments/benchmarks/active_replay]

The grid is every point of the study that the calibrated simulator also predicted (the points
``compare`` matches: model x quantization x GPU x workload x batch size, each engine variant
such as eager its own cell). "Measuring" a cell reads the study's value; the simulator's value
is the sim store's. For each seed, two ways of spending the same budget (``--budget`` of the
cells):

- **active** (``orchestrator.active.selection``): rounds of ``--round`` cells, new engine paths'
  corners first, then the widest intervals, engine starts shared; the predictors re-fitted after
  each round;
- **random**: the same number of cells drawn at random.

Then every unmeasured cell is predicted (``orchestrator.active.predictor``) and compared with
its measured value: the median absolute error (%) of output tok/s and of J per output token,
and the share of unmeasured cells whose measured value lies inside the 90% interval. The
simulator alone (nothing measured) is shown beside them. Writes ``results.json`` and
``results.md`` under ``--out``; goal (issue 31): median error <= 5% for both metrics, coverage
>= 90%, active clearly better than random.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.active.predictor import GridCell, ResidualPredictor  # noqa: E402
from orchestrator.active.selection import next_round  # noqa: E402

METRICS = (("output tok/s", "output_throughput_tok_s"), ("J/output token", "energy_per_output_token_j"))


def grid(store: str, sim_store: str):
    """(cells per metric, measured values per metric, engine-start unit per key)."""
    from orchestrator.analysis.compare import compare_points
    from orchestrator.report.compare import batch_points, read_sweep, require_ok

    t = compare_points(batch_points(require_ok(read_sweep(store))), batch_points(require_ok(read_sweep(sim_store)))).table
    cells: Dict[str, List[GridCell]] = {m: [] for _, m in METRICS}
    truth: Dict[str, Dict[str, float]] = {m: {} for _, m in METRICS}
    units: Dict[str, str] = {}
    for r in t.itertuples():
        key = str(r.cell_id_a)
        units[key] = f"{r.series_a}|offline" if r.workload == "offline" else f"{r.series_a}|server|{r.batch_size}"
        for _, m in METRICS:
            base, _, variant = str(r.series_a).partition(" [")
            variant = "" if is_default(variant.rstrip("]")) else variant.rstrip("]")
            cells[m].append(GridCell(key=key, base=base, variant=variant, workload=str(r.workload),
                                     batch_size=int(r.batch_size), quantization=str(r.quantization),
                                     simulated=float(getattr(r, f"{m}_b"))))
            truth[m][key] = float(getattr(r, f"{m}_a"))
    return cells, truth, units


def is_default(variant: str) -> bool:
    """A series' variant label (``k=v, ...``) that sets only vLLM engine options at their defaults
    is the default engine: the report labels it only because another series of its point differs."""
    from orchestrator.driver.grid import config_of

    defaults = config_of(["engine=vllm"]).engine.vllm
    pairs = [p.strip().split("=", 1) for p in variant.split(",") if p.strip()]
    return all(len(p) == 2 and str(getattr(defaults, p[0], object())).lower() == p[1].lower() for p in pairs)


def fit(cells, truth, keys) -> Dict[str, ResidualPredictor]:
    return {m: ResidualPredictor(cells[m], {k: truth[m][k] for k in keys}) for _, m in METRICS}


def active(cells, truth, units, budget: int, round_size: int, rng) -> List[str]:
    chosen: List[str] = []
    while len(chosen) < budget:
        preds = fit(cells, truth, chosen)
        picked = next_round(cells[METRICS[0][1]], units, list(preds.values()), min(round_size, budget - len(chosen)), rng)
        if not picked.keys:
            break
        chosen += picked.keys
    return chosen


def score(cells, truth, chosen) -> Dict[str, Any]:
    preds = fit(cells, truth, chosen)
    out: Dict[str, Any] = {"measured": len(chosen)}
    for name, m in METRICS:
        p = preds[m].predict_all()
        err = [abs(v.value / truth[m][k] - 1) * 100 for k, v in p.items()]
        inside = [v.low <= truth[m][k] <= v.high for k, v in p.items()]
        out[m] = {"median_abs_error_pct": float(np.median(err)), "p90_abs_error_pct": float(np.percentile(err, 90)),
                  "coverage": float(np.mean(inside)), "n_predicted": len(p),
                  "median_rel_half_width_pct": float(np.median([v.relative_half_width for v in p.values()]) * 100)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", default=str(ROOT / "experiments/h200_study/store"))
    p.add_argument("--sim-store", default=str(ROOT / "experiments/h200_study/sim_store"))
    p.add_argument("--budget", type=float, default=0.25, help="fraction of the cells measured")
    p.add_argument("--round", type=int, default=4, help="cells per round of the active strategy")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "experiments/benchmarks/active_replay"))
    args = p.parse_args()
    t0 = time.monotonic()
    cells, truth, units = grid(args.store, args.sim_store)
    keys = list(truth[METRICS[0][1]])
    budget = round(args.budget * len(keys))
    runs: List[Dict[str, Any]] = []
    for seed in range(args.seeds):
        a = active(cells, truth, units, budget, args.round, np.random.default_rng(seed))
        r = list(np.random.default_rng(1000 + seed).choice(keys, size=budget, replace=False))
        runs.append({"seed": seed, "active": score(cells, truth, a), "random": score(cells, truth, r),
                     "active_units": len({units[k] for k in a}), "random_units": len({units[k] for k in r})})
        print(f"seed {seed}: active {runs[-1]['active'][METRICS[0][1]]['median_abs_error_pct']:.1f}% / "
              f"{runs[-1]['active'][METRICS[1][1]]['median_abs_error_pct']:.1f}%, random "
              f"{runs[-1]['random'][METRICS[0][1]]['median_abs_error_pct']:.1f}% / "
              f"{runs[-1]['random'][METRICS[1][1]]['median_abs_error_pct']:.1f}%", flush=True)
    doc = {"cells": len(keys), "units": len(set(units.values())), "budget_cells": budget, "round": args.round,
           "seeds": args.seeds, "simulator_alone": score(cells, truth, []), "runs": runs,
           "store": rel(args.store), "sim_store": rel(args.sim_store)}
    write_results(Path(args.out), doc, report(doc), time.monotonic() - t0)
    return 0


def write_results(out: Path, doc: Dict, text: str, elapsed_s: float) -> None:
    """``results.json`` (``doc``) and ``results.md`` (``text``) under ``out``; the table printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "results.md").write_text(text)
    print(text)
    print(f"{elapsed_s:.1f} s; {out}/results.md")


def rel(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def summary(doc: Dict, strategy: str, m: str) -> Dict[str, float]:
    rows = [r[strategy][m] for r in doc["runs"]]
    return {"median": float(np.median([r["median_abs_error_pct"] for r in rows])),
            "worst": float(np.max([r["median_abs_error_pct"] for r in rows])),
            "coverage": float(np.mean([r["coverage"] for r in rows])),
            "worst_coverage": float(np.min([r["coverage"] for r in rows])),
            "width": float(np.median([r["median_rel_half_width_pct"] for r in rows]))}


def report(doc: Dict) -> str:
    lines = [f"# Active measurement replayed on the H200 study ({doc['cells']} cells, {doc['units']} engine starts)", "",
             f"{doc['budget_cells']} cells measured ({doc['budget_cells'] / doc['cells']:.0%}), {doc['seeds']} seeds; "
             f"active: rounds of {doc['round']}; errors and 90% interval coverage over the "
             f"{doc['cells'] - doc['budget_cells']} unmeasured cells. `python scripts/bench_active_replay.py`.", "",
             "| strategy | metric | median abs error (median over seeds) | worst seed | coverage of the 90% intervals "
             "(mean; worst seed) | median interval half-width |", "|---|---|---|---|---|---|"]
    for strategy in ("active", "random"):
        for name, m in METRICS:
            s = summary(doc, strategy, m)
            lines.append(f"| {strategy} | {name} | {s['median']:.1f}% | {s['worst']:.1f}% | {s['coverage']:.1%}; "
                         f"{s['worst_coverage']:.1%} | ±{s['width']:.1f}% |")
    for name, m in METRICS:
        s = doc["simulator_alone"][m]
        lines.append(f"| simulator alone (nothing measured) | {name} | {s['median_abs_error_pct']:.1f}% | — | "
                     f"{s['coverage']:.1%} | ±{s['median_rel_half_width_pct']:.1f}% |")
    wins = {m: sum(r["active"][m]["median_abs_error_pct"] < r["random"][m]["median_abs_error_pct"] for r in doc["runs"])
            for _, m in METRICS}
    lines += ["", "Active beats random on " + ", ".join(f"{name} in {wins[m]} of {doc['seeds']} seeds" for name, m in METRICS)
              + f"; engine starts paid: active {np.median([r['active_units'] for r in doc['runs']]):.0f}, random "
              f"{np.median([r['random_units'] for r in doc['runs']]):.0f} (medians).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
