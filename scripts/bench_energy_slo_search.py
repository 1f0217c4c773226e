"""Benchmark: the energy-under-SLO search against the brute-force grid, on the simulator.

For every scenario (model x GPU x offered rate x SLO pair) it runs ``+search=energy_slo``'s
search (Optuna, ``search.method=optuna``) and then the same space as a grid
(``search.method=grid``) into the same store (the grid re-uses the search's cells: same ids),
and compares the search's pick with the grid's optimum: the pick's J per output token as the
grid measured it (repeat 0, the cell both ran) against the lowest J per output token among the
grid's feasible cells; whether the pick is feasible in the grid; and the share of the grid's
launchable cells the search launched (trials + confirmation repeats). Everything runs in one
process and one local Ray cluster, through the same code as the command line
(``search.entry.run_one``).

    python scripts/bench_energy_slo_search.py --out experiments/benchmarks/energy_slo_search

The H200 part (vLLM, measured energy) is the command in that folder's README.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.config.root import Config  # noqa: E402
from orchestrator.config.search import Method, SearchConfig, SloConfig  # noqa: E402
from orchestrator.driver.grid import default_choices, expand, job_config  # noqa: E402
from orchestrator.driver.runner import Session  # noqa: E402
from orchestrator.search.entry import run_one  # noqa: E402
from orchestrator.search.space import jobs_of  # noqa: E402

MODELS = ("llama2_7b", "mistral_7b")
GPUS = ("h100", "a100", "h200")
RATES_RPS = (10, 40)
SLOS_MS = ((1000.0, 50.0), (200.0, 8.0))  # (p99 TTFT, p99 TPOT): loose, tight
AXES = {"batch_size": "1,2,3,4,6,8,12,16,24,32,48,64,96,128,192,256", "quantization": "none,fp8,awq"}
DURATION_S = 30


def scenario_config(model, gpu, rate, store_dir, search: SearchConfig):
    fixed = [f"model={model}", f"gpu={gpu}", "workload=chat_medium", "engine=simulated", "sampler=auto",
             f"workload.rate_rps={rate}", f"workload.duration_s={DURATION_S}"]
    base = job_config(Config(), default_choices(), fixed)
    base = dataclasses.replace(base, name="energy_slo", search=search,
                               store=dataclasses.replace(base.store, dir=str(store_dir)),
                               dispatch=dataclasses.replace(base.dispatch, progress=False, num_cpus=2))
    jobs = jobs_of(AXES, fixed)
    return base, jobs, expand(base, default_choices(), jobs)


def run_scenario(root: Path, model, gpu, rate, slo) -> dict:
    store_dir = root / f"{model}-{gpu}-{rate}rps-{int(slo[0])}-{int(slo[1])}"
    out = {"model": model, "gpu": gpu, "rate_rps": rate, "ttft_p99_slo_ms": slo[0], "tpot_p99_slo_ms": slo[1]}
    for method in (Method.optuna, Method.grid):
        search = SearchConfig(slo=SloConfig(*slo), method=method)
        base, jobs, configs = scenario_config(model, gpu, rate, store_dir, search)
        t0 = time.monotonic()
        record, _, _ = run_one(Session.open(base), base.search, jobs, configs)
        out[method.value] = record
        out[f"{method.value}_wall_s"] = time.monotonic() - t0
    return compare(out)


def compare(out: dict) -> dict:
    search, grid = out.pop("optuna"), out.pop("grid")
    by_cell = {t.cell_id: t for t in grid.trials if not t.confirmation}
    feasible = [t for t in by_cell.values() if t.feasible]
    best = min((t.value for t in feasible), default=math.nan)
    pick = by_cell.get(search.pick.cell_ids[0]) if search.pick else None
    out.update(
        grid_launchable_cells=grid.grid_launchable_cells, search_cells=search.cells_launched,
        fraction_evaluated=search.cells_launched / grid.grid_launchable_cells,
        grid_optimum_j_per_token=best, grid_feasible_cells=len(feasible),
        pick=" ".join(f"{k}={v}" for k, v in search.pick.params) if search.pick else None,
        pick_confirmed=bool(search.pick and search.pick.confirmed),
        pick_grid_j_per_token=pick.value if pick else math.nan,
        pick_feasible_in_grid=bool(pick and pick.feasible),
        gap_to_optimum=(pick.value / best - 1) if pick and feasible else (0.0 if not feasible and not pick else math.nan),
        rounds=search.rounds, trials=len(search.trials), stop_reason=search.stop_reason)
    return out


def summary_md(rows, args) -> str:
    gaps = [r["gap_to_optimum"] for r in rows]
    fracs = [r["fraction_evaluated"] for r in rows]
    bad = [r for r in rows if r["pick"] and not r["pick_feasible_in_grid"]]
    lines = [
        "# Energy-under-SLO search vs the brute-force grid (simulator)", "",
        f"Command: `python scripts/bench_energy_slo_search.py --out {args.out}` (engine=simulated, CPU, "
        f"deterministic; workload chat_medium at the scenario's rate, {DURATION_S} s windows).", "",
        f"Space: batch_size {AXES['batch_size']} x quantization {AXES['quantization']} "
        f"({rows[0]['grid_launchable_cells']} cells per scenario). Scenarios: {len(rows)} = models {MODELS} x "
        f"GPUs {GPUS} x rates {RATES_RPS} req/s x SLOs (p99 TTFT ms, p99 TPOT ms) {SLOS_MS}.", "",
        f"- gap of the pick to the grid's optimal J/output token: median **{100 * statistics.median(gaps):.2f}%**, "
        f"max **{100 * max(gaps):.2f}%** (target <= 5%)",
        f"- cells launched by the search (trials + confirmation repeats) / the grid's launchable cells: median "
        f"**{100 * statistics.median(fracs):.1f}%**, max **{100 * max(fracs):.1f}%** (target <= 25%)",
        f"- picks that violate an SLO or are saturated in the grid: **{len(bad)}**; scenarios where no cell is "
        f"feasible: {sum(1 for r in rows if r['grid_feasible_cells'] == 0)} (the search then picks nothing)", "",
        "| model | GPU | req/s | SLO TTFT/TPOT ms | feasible cells | grid optimum J/tok | pick | pick J/tok (grid) "
        "| gap | cells | share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['gpu']} | {r['rate_rps']} | {r['ttft_p99_slo_ms']:g}/{r['tpot_p99_slo_ms']:g} "
            f"| {r['grid_feasible_cells']} | {r['grid_optimum_j_per_token']:.4f} | {r['pick'] or '-'} "
            f"| {r['pick_grid_j_per_token']:.4f} | {100 * r['gap_to_optimum']:.2f}% | {r['search_cells']} "
            f"| {100 * r['fraction_evaluated']:.0f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/benchmarks/energy_slo_search")
    ap.add_argument("--limit", type=int, default=None, help="only the first N scenarios")
    args = ap.parse_args()
    scenarios = list(itertools.product(MODELS, GPUS, RATES_RPS, SLOS_MS))[: args.limit]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        for i, (model, gpu, rate, slo) in enumerate(scenarios):
            rows.append(run_scenario(Path(tmp), model, gpu, rate, slo))
            r = rows[-1]
            print(f"[{i + 1}/{len(scenarios)}] {model} {gpu} {rate} req/s {slo}: pick {r['pick']} gap "
                  f"{100 * r['gap_to_optimum']:.2f}% cells {r['search_cells']}/{r['grid_launchable_cells']}",
                  file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    (out / "results.md").write_text(summary_md(rows, args))
    print(summary_md(rows, args))


if __name__ == "__main__":
    main()
