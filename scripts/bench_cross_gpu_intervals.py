"""Do the prediction intervals hold on a GPU the calibration never saw? (issue 31, item 1)

    python scripts/bench_cross_gpu_intervals.py [--out experiments/benchmarks/cross_gpu_intervals]

The calibration (``experiments/h200_study/calibration/calibration.json``) was fitted on the H200.
Its efficiency factors (memory and compute efficiency, step overhead, busy-power floor, quantized
kernels' weight efficiency) describe how vLLM uses a GPU relative to its datasheet and are
carried to the H100; its absolute idle power is the H200's and is not: the H100's is taken from
the idle baselines its own measured cells recorded (each cell measures one before its window).
Every measured vLLM cell of the committed H100 stores (Llama-2-7B fp16: offline scans, chat,
the request-energy and prefix-cache cells) is predicted (``worker.simulated_prediction``) and
corrected by ``active.predictor`` trained on every H200 study cell plus ``k`` H100 cells drawn at
random (k = 0, 2, 4; 20 draws each), the others held out: their median absolute error and the
coverage of their 90% intervals, for output tok/s and J per output token. Beside it, the same
with the idle power carried from the H200 (126.6 W) and with the H100's datasheet idle (70 W),
to show what the separation is worth. The H100 cells are all one engine path (default vLLM
options but for those the simulator models: lengths, prefix caching), so they carry no variant.

Writes ``results.json`` and ``results.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.active.predictor import GridCell, ResidualPredictor  # noqa: E402
from orchestrator.config.root import CellConfig, cell_config_from_json  # noqa: E402
from orchestrator.core.identity import cell_identity, digest  # noqa: E402
from orchestrator.worker.simulated_prediction import predict_cell  # noqa: E402
from orchestrator.search.active_sweep import METRICS, variants  # noqa: E402

sys.path.append(str(ROOT / "scripts"))  # the replay benchmark's output writer, last: shadows nothing
from bench_active_replay import write_results  # noqa: E402

H200_STORE = "experiments/h200_study/store"
CALIBRATION = "experiments/h200_study/calibration/calibration.json"
H100_STORES = ("experiments/h100_llama2_7b/vllm_offline", "experiments/h100_llama2_7b/chat_medium_exact",
               "experiments/h100_llama2_7b/hf_vs_vllm", "experiments/benchmarks/request_energy/h100/store",
               "experiments/benchmarks/request_energy/h100/guard/store", "experiments/benchmarks/prefix_cache/store")
DRAWS = 20


def measured(store: str) -> List[Dict[str, Any]]:
    """The ok vLLM cells of ``store`` measured by NVML, with their config and metrics."""
    import pyarrow.dataset as ds

    rows = ds.dataset(str(ROOT / store / "runs"), format="parquet").to_table().to_pylist()
    out = []
    for r in rows:
        if r["status"] != "ok" or r["energy_source"] != "nvml" or r["engine"] != "vllm":
            continue
        out.append({"cell_id": r["cell_id"], "config": cell_config_from_json(r["config_json"]), "idle_w": r["idle_power_w"],
                    METRICS[0]: r["output_throughput_tok_s"], METRICS[1]: r["energy_per_1k_output_tokens_j"] / 1000})
    return out


def shape(row: Dict) -> Tuple[str, float, float]:
    """A cell's workload shape: its workload, mean prompt and output tokens."""
    w = row["config"].workload
    return (w.name, float(w.input.mean_tokens), float(w.output.mean_tokens))


def options(cfg: CellConfig, fitted: Dict[str, Any], idle_w: float | None):
    """The cell's ``engine.simulated`` options with the calibration's factors and this idle."""
    factors = {k: v for k, v in fitted.items() if k not in ("idle_power_w", "quantized_weight_efficiency")}
    kernels = {**cfg.engine.simulated.quantized_weight_efficiency, **fitted.get("quantized_weight_efficiency", {})}
    return dataclasses.replace(cfg.engine.simulated, **factors, quantized_weight_efficiency=kernels, idle_power_w=idle_w)


def grid_cell(row: Dict, variant: str, simulated: Dict[str, float], m: str) -> GridCell:
    cfg: CellConfig = row["config"]
    workload = f"{cfg.workload.name}@{digest(cell_identity(cfg, 'vllm')['workload'])[:8]}"
    return GridCell(key=row["cell_id"], base=f"{cfg.model.name}/{cfg.quantization.name}/{cfg.gpu.name}", variant=variant,
                    workload=workload, batch_size=int(cfg.batch_size), quantization=cfg.quantization.name,
                    simulated=simulated[m])


def predictions(rows: List[Dict], fitted: Dict, idle_w) -> Dict[str, Dict[str, float]]:
    out = {}
    for r in rows:
        p = predict_cell(r["config"], options(r["config"], fitted, idle_w))
        out[r["cell_id"]] = {METRICS[0]: p.output_tok_s, METRICS[1]: p.j_per_output_token}
    return out


def evaluate(h200: List[Dict], h200_sim: Dict, h100: List[Dict], h100_sim: Dict, k: int, seed: int) -> Dict:
    """Train on every H200 cell and ``k`` random H100 cells; score the other H100 cells."""
    rng = np.random.default_rng(seed)
    train = set(rng.choice([r["cell_id"] for r in h100], size=k, replace=False)) if k else set()
    h200_variants = variants([r["config"] for r in h200], ["vllm"] * len(h200))
    out: Dict[str, Any] = {"k": k, "seed": seed}
    for m in METRICS:
        cells = [grid_cell(r, v, h200_sim[r["cell_id"]], m) for r, v in zip(h200, h200_variants)]
        cells += [grid_cell(r, "", h100_sim[r["cell_id"]], m) for r in h100]
        truth = {r["cell_id"]: r[m] for r in h200 + h100}
        known = {key: truth[key] for key in [r["cell_id"] for r in h200] + sorted(train)}
        p = ResidualPredictor(cells, known)
        held = [r["cell_id"] for r in h100 if r["cell_id"] not in train]
        preds = {key: p.predict(key) for key in held}
        err = [abs(preds[key].value / truth[key] - 1) * 100 for key in held]
        raw = [abs(h100_sim[key][m] / truth[key] - 1) * 100 for key in held]
        out[m] = {"median_abs_error_pct": float(np.median(err)), "simulator_median_abs_error_pct": float(np.median(raw)),
                  "coverage": float(np.mean([preds[key].low <= truth[key] <= preds[key].high for key in held])),
                  "median_rel_half_width_pct": float(np.median([preds[key].relative_half_width for key in held]) * 100),
                  "n": len(held)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "experiments/benchmarks/cross_gpu_intervals"))
    args = p.parse_args()
    t0 = time.monotonic()
    fitted = json.loads((ROOT / CALIBRATION).read_text())["options"]
    h200 = measured(H200_STORE)
    shapes = {shape(r) for r in h200}
    every = [r for s in H100_STORES for r in measured(s)]
    h100 = [r for r in every if shape(r) in shapes]
    # cells fed by a traffic file (traces, sessions): left out (the H200 grid ran none; their
    # replay needs the files at the paths their stores name)
    unseen = [r for r in every if shape(r) not in shapes and r["config"].workload.source.value == "synthetic"]
    h200_sim = predictions(h200, fitted, fitted["idle_power_w"])
    idle_h100 = statistics.median(r["idle_w"] for r in h100)
    variants_of_idle: List[Tuple[str, float | None]] = [
        (f"the H100's own idle ({idle_h100:.1f} W, median of its cells' baselines)", idle_h100),
        (f"the H200's idle carried ({fitted['idle_power_w']:.1f} W)", fitted["idle_power_w"]),
        ("the H100's datasheet idle (70 W)", None)]
    doc: Dict[str, Any] = {"h200_cells": len(h200), "h100_cells": len(h100), "draws": DRAWS, "runs": [],
                           "unseen_shapes": unseen_errors(unseen, fitted, idle_h100)}
    for label, idle in variants_of_idle:
        h100_sim = predictions(h100, fitted, idle)
        for k in (0, 2, 4):
            for seed in range(DRAWS if k else 1):
                doc["runs"].append({"idle": label, **evaluate(h200, h200_sim, h100, h100_sim, k, seed)})
    write_results(Path(args.out), doc, report(doc), time.monotonic() - t0)
    return 0


def unseen_errors(rows: List[Dict], fitted: Dict, idle_w: float) -> List[Dict]:
    """The simulator's error on the H100 cells of workload shapes the H200 grid never ran."""
    sim = predictions(rows, fitted, idle_w)
    return [{"workload": "{} {:.0f}/{:.0f}".format(*shape(r)), "batch_size": int(r["config"].batch_size),
             **{m: sim[r["cell_id"]][m] / r[m] - 1 for m in METRICS}} for r in rows]


def report(doc: Dict) -> str:
    lines = [f"# Prediction intervals on a GPU the calibration never saw: the H100 ({doc['h100_cells']} cells)", "",
             f"Trained on the {doc['h200_cells']} H200 study cells (calibrated there) and k H100 cells drawn at random "
             f"({doc['draws']} draws for k > 0), scored on the other H100 cells. "
             "`python scripts/bench_cross_gpu_intervals.py`.", "",
             "| H100 idle power in the prediction | k | metric | simulator alone: median abs error | corrected: median "
             "abs error | coverage of the 90% intervals (mean; worst draw) | median half-width |",
             "|---|---|---|---|---|---|---|"]
    groups: Dict[Tuple[str, int], List[Dict]] = {}
    for r in doc["runs"]:
        groups.setdefault((r["idle"], r["k"]), []).append(r)
    names = {METRICS[0]: "output tok/s", METRICS[1]: "J/output token"}
    for (idle, k), runs in groups.items():
        for m in METRICS:
            rows = [r[m] for r in runs]
            lines.append(f"| {idle} | {k} | {names[m]} | {np.median([x['simulator_median_abs_error_pct'] for x in rows]):.1f}% "
                         f"| {np.median([x['median_abs_error_pct'] for x in rows]):.1f}% "
                         f"| {np.mean([x['coverage'] for x in rows]):.1%}; {np.min([x['coverage'] for x in rows]):.1%} "
                         f"| ±{np.median([x['median_rel_half_width_pct'] for x in rows]):.1f}% |")
    lines += ["", "Workload shapes the H200 grid never ran (excluded above; the prefix-cache cells, fed by traffic "
              "files, left out): the simulator alone, signed error (intervals learned on the grid's shapes do "
              "not speak for these):", "",
              "| workload (in/out tokens) | batch | output tok/s | J/output token |", "|---|---|---|---|"]
    for u in doc["unseen_shapes"]:
        lines.append(f"| {u['workload']} | {u['batch_size']} | {u[METRICS[0]]:+.1%} | {u[METRICS[1]]:+.1%} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
