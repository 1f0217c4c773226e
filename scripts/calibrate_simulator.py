"""Calibrate the simulator on measured cells: fit its efficiency factors and power model.

    python scripts/calibrate_simulator.py STORE [--model NAME] [--quantization none] [--workload offline]
        [--out DIR]

Reads the ok, measured (``energy_source=nvml``) cells of ``STORE`` with the given model,
quantization and workload (the study fits on its Llama-2-7B fp16 offline scan only; without
``--model`` the selection must hold one model and one GPU), averages repeats per batch size,
and fits, with the simulator itself predicting each batch size (``engine=simulated``, the cells'
own configs, one measured batch each, on virtual time):

1. ``idle_power_w``: the median idle baseline the cells measured (W);
2. ``memory_efficiency``, ``compute_efficiency``, ``step_overhead_s`` and ``busy_power_floor``
   together: least squares on log(output tok/s) and log(gross J per output token) over the batch
   sizes (Nelder-Mead from the defaults; the power model depends on the timing through each
   step's compute-bound share, so the two are fitted at once).

3. with ``--kernel-store STORE`` (another store: the study's quantized cells stay held out), for
   each quantization method with ok measured offline cells of the same model and GPU there,
   ``quantized_weight_efficiency.<method>``: the fraction of ``memory_efficiency`` at which the
   method's dequantizing kernel reads its weights — one number, least squares on the same two
   log errors over that store's batch sizes, every other factor kept from step 2.

Writes ``calibration.json`` (the fitted values, the method, per batch size measured vs
predicted and the error) and ``calibration.md`` under ``--out``, and prints the overrides that
apply it: ``engine.simulated.memory_efficiency=... ...``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIMING = ("memory_efficiency", "compute_efficiency", "step_overhead_s")
BOUNDS = {"memory_efficiency": (0.05, 1.0), "compute_efficiency": (0.05, 1.0), "step_overhead_s": (0.0, 0.05),
          "busy_power_floor": (0.0, 1.0)}


def measured_rows(store: str) -> List[Dict]:
    """The store's ok runs rows with measured energy (``energy_source=nvml``)."""
    from orchestrator.store.sweep_store import load

    return [r for r in load(store).runs.to_pylist() if r["status"] == "ok" and r["energy_source"] == "nvml"]


def selected_rows(store: str, model: str | None, quantization: str, workload: str) -> List[Dict]:
    """The ok measured runs rows of the selection; exits with one line when it is empty or mixes
    models or GPUs (a fit per batch size needs one of each)."""
    rows = [r for r in measured_rows(store)
            if r["quantization"] == quantization and r["workload"] == workload and model in (None, r["model"])]
    if not rows:
        raise SystemExit(f"{store}: no ok measured {model or ''} {quantization} {workload} cells")
    for axis in ("model", "gpu"):
        values = sorted({r[axis] for r in rows})
        if len(values) > 1:
            raise SystemExit(f"{store}: the {quantization} {workload} cells span {axis}s {', '.join(values)}: "
                             f"choose one{' with --model' if axis == 'model' else ''}")
    return rows


def measured_points(rows: List[Dict]) -> List[Dict]:
    """Per batch size: the cells' config (first repeat), mean output tok/s and gross J/output
    token over the ok measured repeats, and the idle baseline (W)."""
    from orchestrator.config.root import cell_config_from_json

    points = []
    for bs in sorted({r["batch_size"] for r in rows}):
        same = [r for r in rows if r["batch_size"] == bs]
        points.append({"batch_size": bs, "n": len(same), "config": cell_config_from_json(same[0]["config_json"]),
                       "tok_s": float(np.mean([r["output_throughput_tok_s"] for r in same])),
                       "j_per_tok": float(np.mean([r["energy_per_1k_output_tokens_j"] for r in same])) / 1e3,
                       "idle_w": float(np.median([r["idle_power_w"] for r in same]))})
    return points


def simulate(config, options: Dict) -> Dict:
    """The simulator's output tok/s and gross J/output token for one cell config with these
    ``engine.simulated`` options (``worker.simulated_prediction``: steady state)."""
    from orchestrator.worker.simulated_prediction import predict_cell

    p = predict_cell(config, dataclasses.replace(config.engine.simulated, **options))
    return {"tok_s": p.output_tok_s, "j_per_tok": p.j_per_output_token}


def _clip(name: str, value: float) -> float:
    lo, hi = BOUNDS[name]
    return float(min(max(value, lo), hi))


def _log_error(points: List[Dict], options: Dict) -> float:
    """Sum of squared log errors of tok/s and J/output token over the points."""
    err = 0.0
    for p in points:
        sim = simulate(p["config"], options)
        err += (np.log(sim["tok_s"]) - np.log(p["tok_s"])) ** 2 + (np.log(sim["j_per_tok"]) - np.log(p["j_per_tok"])) ** 2
    return float(err)


def fit(points: List[Dict]) -> Dict:
    """The fitted ``engine.simulated`` options (see module doc)."""
    from scipy.optimize import minimize

    from orchestrator.config.engine_options import SimulatedOptions

    default = SimulatedOptions()
    idle = {"idle_power_w": float(np.median([p["idle_w"] for p in points]))}
    names = (*TIMING, "busy_power_floor")

    def options(x):
        return {**idle, **{n: _clip(n, v) for n, v in zip(names, x)}}

    res = minimize(lambda x: _log_error(points, options(x)), [getattr(default, n) for n in names],
                   method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-10, "maxiter": 1500})
    return options(res.x)


def fit_kernel(points: List[Dict], options: Dict, method: str) -> float:
    """``quantized_weight_efficiency`` of ``method`` on its points, the other options fixed."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda k: _log_error(points, {**options, "quantized_weight_efficiency": {method: k}}),
                          bounds=(0.05, 1.0), method="bounded", options={"xatol": 1e-4})
    return float(res.x)


def kernel_fits(store: str, model: str, gpu: str, options: Dict) -> Dict[str, Dict]:
    """Per quantization method of ``store`` (offline, ``model`` on ``gpu``, not ``none``): the
    fitted weight efficiency and its per-batch comparison."""
    runs = [r for r in measured_rows(store) if r["workload"] == "offline" and r["model"] == model and r["gpu"] == gpu]
    out = {}
    for method in sorted({r["quantization"] for r in runs} - {"none"}):
        points = measured_points([r for r in runs if r["quantization"] == method])
        k = fit_kernel(points, options, method)
        out[method] = {"efficiency": k, "cells": comparison(points, {**options,
                                                                    "quantized_weight_efficiency": {method: k}})}
    return out


def comparison(points: List[Dict], options: Dict) -> List[Dict]:
    """Per batch size: measured vs predicted tok/s and J/output token, relative errors."""
    out = []
    for p in points:
        sim = simulate(p["config"], options)
        out.append({"batch_size": p["batch_size"], "repeats": p["n"], "measured_tok_s": p["tok_s"],
                    "predicted_tok_s": sim["tok_s"], "tok_s_error": sim["tok_s"] / p["tok_s"] - 1,
                    "measured_j_per_tok": p["j_per_tok"], "predicted_j_per_tok": sim["j_per_tok"],
                    "j_per_tok_error": sim["j_per_tok"] / p["j_per_tok"] - 1})
    return out


def overrides(options: Dict) -> str:
    flat = {}
    for k, v in options.items():
        flat.update({f"{k}.{m}": e for m, e in v.items()} if isinstance(v, dict) else {k: v})
    return " ".join(f"engine.simulated.{k}={v:.6g}" for k, v in sorted(flat.items()))


def _table(rows: List[Dict]) -> List[str]:
    lines = ["| batch | repeats | tok/s measured | predicted | error | J/out tok measured | predicted | error |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['repeats']} | {r['measured_tok_s']:,.1f} | {r['predicted_tok_s']:,.1f} "
                     f"| {r['tok_s_error'] * 100:+.1f}% | {r['measured_j_per_tok']:.4g} "
                     f"| {r['predicted_j_per_tok']:.4g} | {r['j_per_tok_error'] * 100:+.1f}% |")
    return lines


def markdown(store: str, options: Dict, rows: List[Dict], quantization: str, workload: str,
             kernels: Dict[str, Dict] | None = None, kernel_store: str | None = None) -> str:
    lines = [f"# Simulator calibration on `{store}` ({quantization}, {workload})", "",
             "Fitted with `python scripts/calibrate_simulator.py` (see its docstring for the method):", "",
             f"`{overrides(options)}`", ""] + _table(rows)
    med = lambda rs, k: np.median([abs(r[k]) for r in rs]) * 100  # noqa: E731
    lines += ["", f"Median absolute error on the fitted cells: tok/s {med(rows, 'tok_s_error'):.1f}%, "
                  f"J/output token {med(rows, 'j_per_tok_error'):.1f}% (fitted, not held out)."]
    for method, k in (kernels or {}).items():
        lines += ["", f"## {method}: quantized weights read at {k['efficiency']:.3f} × memory_efficiency", "",
                  f"Fitted on `{kernel_store}`'s {method} offline cells (one number; the factors above kept):", ""]
        lines += _table(k["cells"])
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--model", help="the model to fit on (default: the selection's only one)")
    ap.add_argument("--quantization", default="none")
    ap.add_argument("--workload", default="offline")
    ap.add_argument("--kernel-store", help="a store of quantized offline cells (same model and GPU) to fit each "
                                           "method's quantized_weight_efficiency on")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rows_in = selected_rows(args.store, args.model, args.quantization, args.workload)
    points = measured_points(rows_in)
    options = fit(points)
    rows = comparison(points, options)
    model, gpu = rows_in[0]["model"], rows_in[0]["gpu"]
    kernels = kernel_fits(args.kernel_store, model, gpu, options) if args.kernel_store else {}
    if kernels:
        options["quantized_weight_efficiency"] = {m: k["efficiency"] for m, k in kernels.items()}
    text = markdown(args.store, options, rows, args.quantization, args.workload, kernels, args.kernel_store)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"options": options, "overrides": overrides(options), "store": args.store,
               "model": model, "gpu": gpu, "quantization": args.quantization, "workload": args.workload,
               "cells": rows, "kernel_store": args.kernel_store,
               "kernel_cells": {m: k["cells"] for m, k in kernels.items()},
               "method": __doc__.split("\n\n", 2)[2].strip()}
        (args.out / "calibration.json").write_text(json.dumps(doc, indent=1))
        (args.out / "calibration.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
