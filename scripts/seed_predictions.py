"""The seeds' own hardware, predicted: the simulator, with the efficiency factors calibrated on the
H200 study, runs each seed's sweep on the seed's GPU (T4: Llama-2-7B AWQ chat at 20 and 50 req/s,
max-num-seqs 1 and 8; A800: Mistral-7B INT8 offline static batches 1-64), and the seeds'
published figures are put beside the predictions with what explains the differences.

Only the calibration's efficiency factors travel (``compute_efficiency``, ``memory_efficiency``,
``step_overhead_s``, and the quantized kernels' ``quantized_weight_efficiency``): the power model
stays each GPU's datasheet (idle and TDP from conf/gpu).
The simulator models vLLM with CUDA graphs (its reference) at a roofline with the fp16 scan's
efficiencies (and AWQ's weights read at the fraction fitted on the H200 kernel benchmark). Both
seeds ran engine paths that also spend host time on every step while the GPU waits: vLLM with
``enforce_eager`` (seed 000) launches each kernel from Python, transformers + bitsandbytes
LLM.int8 (seed 004) runs a Python decode loop. Each path's **host time per step**
(``engine.simulated.host_step_s``, drawn at idle power) is fitted on one H200 cell of the study
(batch ÷ measured tok/s − batch ÷ simulated tok/s), checked against the path's other H200 cells,
and added to the seed's prediction — assuming the seed's host launches as fast as the H200
machine's. Every number here is a prediction, labelled so.

    python scripts/seed_predictions.py --calibration experiments/h200_study/calibration/calibration.json \
        --measured experiments/h200_study/store --predicted-h200 experiments/h200_study/sim_store \
        --work /tmp/seeds --out experiments/h200_study/seeds
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.store.sweep_store import load  # noqa: E402

EFFICIENCY_KEYS = ("compute_efficiency", "memory_efficiency", "step_overhead_s")
SEED_T4 = "000 (T4, Llama-2-7B AWQ, vllm serve, enforce_eager)"
SEED_A800 = "004 (A800, Mistral-7B pure INT8, transformers + bitsandbytes)"


@dataclass(frozen=True)
class Published:
    """One figure set a seed printed (``../shared/seeds/``); None where it printed none."""

    seed: str
    workload: str
    batch_size: int
    output_tok_s: float
    request_rps: Optional[float] = None
    ttft_p50_ms: Optional[float] = None
    tpot_p50_ms: Optional[float] = None
    energy_per_request_j: Optional[float] = None
    energy_per_1k_output_tokens_j: Optional[float] = None


PUBLISHED = [
    Published(SEED_T4, "chat_medium", 1, 22.2, 19.35, 15_505, 27.22),
    Published(SEED_T4, "chat_medium", 8, 99.4, 19.29, 19_799, 40.72),
    Published(SEED_T4, "chat_high", 1, 36.7, 47.33),
    Published(SEED_T4, "chat_high", 8, 179.2, 48.49),
    *[Published(SEED_A800, "offline", b, tok, None, None, None, jr, jk) for b, tok, jr, jk in [
        (1, 18.09, 14.16, 5_781), (2, 36.48, 7.57, 3_091), (4, 72.96, 3.79, 1_580), (8, 144.32, 1.77, 827),
        (16, 283.71, 0.98, 452), (32, 548.20, 0.72, 295), (64, 1_003.5, 0.61, 248)]],
]


def _ok_runs(store: Path) -> pd.DataFrame:
    runs = load(str(store)).runs.to_pandas()
    return runs[runs["status"] == "ok"]


def simulate(name: str, store: Path, overrides: List[str], sweep: Optional[str] = None) -> pd.DataFrame:
    """Run ``+sweep=<sweep>`` (or, without one, the multirun grid in ``overrides``) on the
    simulator into ``store`` (resumes: a complete store is not run again)."""
    head = [f"+sweep={sweep}"] if sweep else ["-m"]
    cmd = [sys.executable, "-m", "orchestrator", *head, "engine=simulated", f"name={name}",
           f"store.dir={store}", "dispatch.progress=false", *overrides]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return _ok_runs(store)


def efficiency_overrides(calibration: Path) -> List[str]:
    """The calibration's efficiency factors as overrides, the quantized kernels' weight-read
    factors included (``quantized_weight_efficiency.<method>``): not its power model."""
    options = json.loads(calibration.read_text())["options"]
    kernels = options.get("quantized_weight_efficiency", {})
    return ([f"engine.simulated.{k}={options[k]}" for k in EFFICIENCY_KEYS]
            + [f"engine.simulated.quantized_weight_efficiency.{m}={v}" for m, v in sorted(kernels.items())])


@dataclass(frozen=True)
class EnginePath:
    """An engine path that the simulator's reference (vLLM with CUDA graphs) misses by host-bound
    time per step, fitted on one H200 cell of the path and checked on the others."""

    name: str
    seed: str  # whose prediction it carries to
    model: str
    quantization: str
    engine: str
    option: tuple  # (engine, option, value) that selects the path's measured cells
    workloads: tuple
    batch_sizes: tuple
    fit_on: tuple  # (workload, batch size) of the cell the host time is fitted on


EAGER = EnginePath("vLLM AWQ enforce_eager", SEED_T4, "llama2_7b", "awq", "vllm", ("vllm", "enforce_eager", True),
                   ("chat_medium", "chat_high"), (1, 8), ("chat_medium", 1))
BNB = EnginePath("transformers + bitsandbytes INT8, threshold 0.0", SEED_A800, "mistral_7b", "int8", "hf",
                 ("hf", "int8_threshold", 0.0), ("offline",), (1, 2, 4, 8, 16, 32, 64), ("offline", 1))
PATHS = (EAGER, BNB)


@dataclass
class HostFit:
    """``host_step_s`` of a path: the measured seconds per output token minus the simulator's at the
    fit cell (batch ÷ tok/s: a step emits one token per running sequence), and the H200 check."""

    path: str
    fit_on: str
    host_step_s: float
    checks: List[dict]  # per H200 cell of the path: measured, predicted with host_step_s, error %


def _engine_option(config_json: str, engine: str, key: str):
    """One option of the engine block of a runs row's config (``engine.<engine>.<key>``)."""
    return json.loads(config_json)["engine"][engine].get(key)


def path_cells(runs: pd.DataFrame, path: EnginePath) -> pd.DataFrame:
    """The measured H200 cells of ``path`` among ok ``runs``."""
    m = runs[(runs["engine"] == path.engine) & (runs["quantization"] == path.quantization)
             & (runs["model"] == path.model) & (runs["gpu"] == "h200") & runs["workload"].isin(path.workloads)]
    engine, key, value = path.option
    keep = [_engine_option(c, engine, key) == value for c in m["config_json"]]
    return m[pd.Series(keep, index=m.index, dtype=bool)]


def _point(t: pd.DataFrame, workload: str, batch: int) -> Optional[pd.Series]:
    g = t[(t["workload"] == workload) & (t["batch_size"] == batch)]
    return g[["output_throughput_tok_s", "energy_per_1k_output_tokens_j"]].mean() if len(g) else None


def fit_host_step(path: EnginePath, measured: pd.DataFrame, reference: pd.DataFrame) -> Optional[float]:
    """Host seconds per step at the fit cell: batch ÷ measured tok/s − batch ÷ the reference
    simulator's tok/s (``reference``: the H200 cells simulated without host time), which is the
    step time when every step runs the full batch (an offline batch, a saturated server; an
    unsaturated fit cell is refused); None when either side lacks the cell. Host and GPU time
    add up (no overlap): an eager engine that launched ahead of the GPU would instead take
    max(host, GPU) per step."""
    wl, b = path.fit_on
    ref = reference[(reference["model"] == path.model) & (reference["quantization"] == path.quantization)
                    & (reference["gpu"] == "h200")]
    cells = path_cells(measured, path)
    at = cells[(cells["workload"] == wl) & (cells["batch_size"] == b)]
    if wl != "offline" and len(at) and not at["saturated"].astype(bool).all():
        raise ValueError(f"{path.name}: the fit cell {wl} at {b} is not saturated: its tok/s is the offered "
                         "load, not the step time")
    m, r = _point(cells, wl, b), _point(ref, wl, b)
    if m is None or r is None:
        return None
    host = b / m["output_throughput_tok_s"] - b / r["output_throughput_tok_s"]
    return max(0.0, host) if math.isfinite(host) else None


def host_checks(path: EnginePath, measured: pd.DataFrame, predicted: pd.DataFrame) -> List[dict]:
    """Measured against predicted-with-host-time per H200 cell of the path (the fit cell marked)."""
    cells = path_cells(measured, path)
    out = []
    for wl in path.workloads:
        for b in path.batch_sizes:
            m, p = _point(cells, wl, b), _point(predicted, wl, b)
            if m is None or p is None:
                continue
            out.append({"workload": wl, "batch_size": b, "fitted": (wl, b) == path.fit_on,
                        "measured_tok_s": float(m["output_throughput_tok_s"]),
                        "predicted_tok_s": float(p["output_throughput_tok_s"]),
                        "measured_j_per_1k": float(m["energy_per_1k_output_tokens_j"]),
                        "predicted_j_per_1k": float(p["energy_per_1k_output_tokens_j"]),
                        "tok_s_error_pct": 100 * (p["output_throughput_tok_s"] / m["output_throughput_tok_s"] - 1),
                        "j_error_pct": 100 * (p["energy_per_1k_output_tokens_j"] / m["energy_per_1k_output_tokens_j"]
                                              - 1)})
    return out


def path_grid(path: EnginePath) -> List[str]:
    """Multirun overrides that simulate the path's H200 cells."""
    return [f"model={path.model}", f"quantization={path.quantization}", "gpu=h200",
            f"workload={','.join(path.workloads)}", f"batch_size={','.join(map(str, path.batch_sizes))}"]


def rows_for(pub: Published, pred: pd.DataFrame, pred_host: Optional[pd.DataFrame]) -> dict:
    """The seed's figures beside the reference prediction and, when ``pred_host`` is given, the
    prediction with the H200-fitted host time of the seed's engine path."""
    def cell_of(t):
        return t[(t["workload"] == pub.workload) & (t["batch_size"] == pub.batch_size)].iloc[0]

    cell = cell_of(pred)
    row = {**asdict(pub), "predicted_output_tok_s": float(cell["output_throughput_tok_s"]),
           "predicted_request_rps": float(cell["request_throughput_rps"]),
           "predicted_ttft_p50_ms": float(cell["ttft_p50_ms"]), "predicted_tpot_p50_ms": float(cell["tpot_p50_ms"]),
           "predicted_energy_per_1k_output_tokens_j": float(cell["energy_per_1k_output_tokens_j"]),
           "predicted_saturated": bool(cell["saturated"]),
           "predicted_output_tokens_per_request": float(cell["output_tokens_mean_cfg"]),
           "offered_rate_rps": float(cell["offered_rate_rps"]) if pd.notna(cell.get("offered_rate_rps")) else None}
    host = cell_of(pred_host) if pred_host is not None else None
    for key, col in (("output_tok_s", "output_throughput_tok_s"), ("request_rps", "request_throughput_rps"),
                     ("ttft_p50_ms", "ttft_p50_ms"), ("tpot_p50_ms", "tpot_p50_ms"),
                     ("energy_per_1k_output_tokens_j", "energy_per_1k_output_tokens_j")):
        row[f"predicted_host_{key}"] = float(host[col]) if host is not None else None
    row["predicted_host_saturated"] = bool(host["saturated"]) if host is not None else None
    row["why"] = explain(pub, row)
    return row


def explain(pub: Published, row: dict) -> str:
    """What tells the two numbers apart, from the numbers themselves."""
    why = []
    if pub.request_rps:
        tpr = pub.output_tok_s / pub.request_rps
        why.append(f"the seed's tok/s ÷ req/s = {tpr:.1f} output tokens per request (ours: "
                   f"{row['predicted_output_tokens_per_request']:.0f}, configured, EOS ignored)")
    if row["predicted_saturated"]:
        host = row["predicted_host_request_rps"]
        also = f" ({host:.2f} with the H200 host time)" if host is not None else ""
        why.append(f"predicted saturated: {row['predicted_request_rps']:.2f} req/s{also} served of "
                   f"{row['offered_rate_rps']:.0f} offered (the queue grows; TTFT is queueing)")
    if pub.energy_per_request_j and pub.energy_per_1k_output_tokens_j:
        implied = pub.energy_per_request_j / pub.energy_per_1k_output_tokens_j * 1000
        why.append(f"the seed's J/request ÷ J/token implies {implied:.2f} tokens per request")
    if row["predicted_host_output_tok_s"] is None:
        why.append("roofline of 8-bit weights (vLLM-like), not bitsandbytes: no H200 hf INT8 cell to fit its host time"
                   if pub.seed == SEED_A800 else "vLLM with CUDA graphs: no H200 eager cell to fit its host time")
    return "; ".join(why)


def fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}"


def _md_row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _t4_lines(rows: List[dict]) -> List[str]:
    lines = ["| workload | max-num-seqs | seed tok/s | predicted tok/s | + H200 host time | seed req/s | predicted "
             "req/s | + H200 host time | seed TTFT p50 ms | predicted | + H200 host time | seed TPOT p50 ms | "
             "predicted | + H200 host time | predicted J/1k out tok | + H200 host time | why they differ |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cells = [r["workload"], r["batch_size"], fmt(r["output_tok_s"]), fmt(r["predicted_output_tok_s"]) + " †",
                 fmt(r["predicted_host_output_tok_s"]) + " †", fmt(r["request_rps"], 2),
                 fmt(r["predicted_request_rps"], 2) + " †", fmt(r["predicted_host_request_rps"], 2) + " †",
                 fmt(r["ttft_p50_ms"], 0), fmt(r["predicted_ttft_p50_ms"], 0) + " †",
                 fmt(r["predicted_host_ttft_p50_ms"], 0) + " †", fmt(r["tpot_p50_ms"], 2),
                 fmt(r["predicted_tpot_p50_ms"], 2) + " †", fmt(r["predicted_host_tpot_p50_ms"], 2) + " †",
                 fmt(r["predicted_energy_per_1k_output_tokens_j"], 0) + " †",
                 fmt(r["predicted_host_energy_per_1k_output_tokens_j"], 0) + " †", r["why"]]
        lines.append(_md_row(cells))
    return lines


def _a800_lines(rows: List[dict]) -> List[str]:
    lines = ["| batch | seed tok/s | predicted (roofline) | + H200 host time | seed J/1k tok | predicted "
             "(roofline) | + H200 host time | why they differ |", "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(_md_row([r["batch_size"], fmt(r["output_tok_s"], 2), fmt(r["predicted_output_tok_s"]) + " †",
                              fmt(r["predicted_host_output_tok_s"], 2) + " †",
                              fmt(r["energy_per_1k_output_tokens_j"], 0),
                              fmt(r["predicted_energy_per_1k_output_tokens_j"], 0) + " †",
                              fmt(r["predicted_host_energy_per_1k_output_tokens_j"], 0) + " †", r["why"]]))
    return lines


def _check_lines(fit: HostFit) -> List[str]:
    """The H200 check of one path's host time: measured and predicted per cell, the fit cell marked."""
    held = [c for c in fit.checks if not c["fitted"]]
    med = lambda k: float(np.median([abs(c[k]) for c in held])) if held else float("nan")  # noqa: E731
    lines = [f"**{fit.path}**: `host_step_s` = {fit.host_step_s * 1000:.2f} ms, fitted on the H200 cell "
             f"{fit.fit_on}; on the other {len(held)} H200 cells of the path the simulator with it is off by "
             f"{med('tok_s_error_pct'):.1f}% in tok/s and {med('j_error_pct'):.1f}% in J/output token (median of "
             "absolute errors); without it, by the study's `prediction/compare.md`.", "",
             "| workload | batch | measured ms per step (batch ÷ tok/s) | measured tok/s | predicted † | error | "
             "measured J/1k out tok | predicted † | error | |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in fit.checks:
        lines.append(_md_row([c["workload"], c["batch_size"], fmt(c["batch_size"] / c["measured_tok_s"] * 1000, 2),
                              fmt(c["measured_tok_s"]), fmt(c["predicted_tok_s"]),
                              f"{c['tok_s_error_pct']:+.1f}%", fmt(c["measured_j_per_1k"], 0),
                              fmt(c["predicted_j_per_1k"], 0), f"{c['j_error_pct']:+.1f}%",
                              "fitted" if c["fitted"] else "held out"]))
    return lines + [""]


def markdown(rows: List[dict], calibration: Path, fits: Dict[str, HostFit]) -> str:
    lines = ["# The seeds' hardware, predicted (not measured)", "",
             f"Simulator efficiency factors from `{calibration}` (fitted on the H200 study's fp16 offline scan, "
             "and AWQ's weight-read factor on the H200 kernel benchmark); each GPU's datasheet power model. "
             "Generated by `scripts/seed_predictions.py`. Those factors describe vLLM with CUDA graphs, the "
             "simulator's reference. Both seeds ran engine paths that spend host time on every step while the GPU "
             "waits — seed 000 vLLM with `enforce_eager` (no CUDA graphs: each kernel launched from Python), seed "
             "004 transformers + bitsandbytes LLM.int8 (a Python decode loop, int8 matmuls with outlier handling) — "
             "so each path's **host time per step** (`engine.simulated.host_step_s`, at idle GPU draw) is fitted on "
             "one H200 cell of the study, checked on the path's other H200 cells, and then added on the seed's GPU: "
             "that assumes the seed's host launches as fast as the H200 machine's (a host-bound cost, not a GPU "
             "one) and that host and GPU time add up; were they to overlap fully (a step = the longer of the two), "
             "a seed GPU slower than its host would run at the reference prediction. An empty TTFT/TPOT: no measured request finished before the drain limit (all cancelled).", ""]
    lines += ["## The host time of each path, on the H200", ""]
    for fit in fits.values():
        lines += _check_lines(fit)
    lines += [f"## Seed {SEED_T4}", ""] + _t4_lines([r for r in rows if r["seed"] == SEED_T4])
    lines += ["", f"## Seed {SEED_A800}", ""] + _a800_lines([r for r in rows if r["seed"] == SEED_A800])
    lines += ["", "![each seed's published tok/s beside the predictions](seeds.png)", "",
              "† predicted by the simulator, not measured."]
    return "\n".join(lines) + "\n"


def plot(rows: List[dict], path: Path) -> int:
    """``seeds.png``: each seed's published output tok/s beside the predictions: the T4
    chat cells as grouped bars, the A800 static batches as lines over batch size (log-log).
    Returns how many values it drew (a series without a value, e.g. no host time fitted yet, draws none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = (("seed (published)", "output_tok_s", "#444444"), ("predicted †", "predicted_output_tok_s", "#1f77b4"),
              ("predicted + H200 host time †", "predicted_host_output_tok_s", "#ff7f0e"))
    fig, (t4_ax, a800_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    t4 = [r for r in rows if r["seed"] == SEED_T4]
    x = np.arange(len(t4))
    for i, (name, key, color) in enumerate(series):
        t4_ax.bar(x + (i - 1) * 0.27, [r[key] or np.nan for r in t4], 0.27, label=name, color=color)
    t4_ax.set_xticks(x, [f"{r['workload']}\nmax-num-seqs {r['batch_size']}" for r in t4], fontsize=8)
    t4_ax.set(ylabel="output tok/s", title=f"Seed {SEED_T4}")
    a800 = [r for r in rows if r["seed"] == SEED_A800]
    for name, key, color in series:
        a800_ax.plot([r["batch_size"] for r in a800], [r[key] or np.nan for r in a800], "o-", label=name, color=color)
    a800_ax.set(xscale="log", yscale="log", xlabel="static batch size", ylabel="output tok/s",
                title=f"Seed {SEED_A800}")
    a800_ax.set_xticks([r["batch_size"] for r in a800], [str(r["batch_size"]) for r in a800])
    for ax in (t4_ax, a800_ax):
        ax.title.set_fontsize(9)
        ax.grid(True, which="major", alpha=0.3)
    t4_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return sum(r[key] is not None for r in rows for _name, key, _c in series)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calibration", type=Path, required=True)
    ap.add_argument("--measured", type=Path, help="the H200 study's store (its eager and hf INT8 cells)")
    ap.add_argument("--predicted-h200", type=Path, help="the simulated store of the same grid on the H200")
    ap.add_argument("--work", type=Path, required=True, help="where the simulated stores go")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    overrides = efficiency_overrides(args.calibration)
    h200_overrides = json.loads(args.calibration.read_text())["overrides"].split()  # with its power model
    measured = _ok_runs(args.measured) if args.measured else None
    reference = _ok_runs(args.predicted_h200) if args.predicted_h200 else None
    fits: Dict[str, HostFit] = {}
    for path in PATHS:
        host = fit_host_step(path, measured, reference) if measured is not None and reference is not None else None
        if host is None:
            continue
        name = path.engine + "_" + path.quantization
        checked = simulate(f"{name}_h200_host", args.work / f"{name}_h200_host_{host:.6g}",
                           [*path_grid(path), *h200_overrides, f"engine.simulated.host_step_s={host:.6g}"])
        fits[path.seed] = HostFit(path.name, f"{path.fit_on[0]} at batch {path.fit_on[1]}", host,
                                  host_checks(path, measured, checked))
    sweeps = {SEED_T4: "seed_t4_awq", SEED_A800: "seed_a800_int8"}
    predicted, with_host = {}, {}
    for seed, sweep in sweeps.items():
        predicted[seed] = simulate(f"{sweep}_predicted", args.work / sweep, overrides, sweep=sweep)
        if seed in fits:
            with_host[seed] = simulate(f"{sweep}_host_predicted", args.work / f"{sweep}_host_{fits[seed].host_step_s:.6g}",
                                       [*overrides, f"engine.simulated.host_step_s={fits[seed].host_step_s:.6g}"],
                                       sweep=sweep)
    rows = [rows_for(p, predicted[p.seed], with_host.get(p.seed)) for p in PUBLISHED]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps(
        {"overrides": overrides, "host_fits": {s: asdict(f) for s, f in fits.items()}, "rows": rows},
        indent=1, default=str))
    (args.out / "seeds.md").write_text(markdown(rows, args.calibration, fits))
    plot(rows, args.out / "seeds.png")
    print(f"wrote {args.out / 'seeds.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
