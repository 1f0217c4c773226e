"""The seeds' own hardware, predicted: the simulator, with the efficiency factors calibrated on the
H200 study, runs each seed's sweep on the seed's GPU (T4: Llama-2-7B AWQ chat at 20 and 50 req/s,
max-num-seqs 1 and 8; A800: Mistral-7B INT8 offline static batches 1-64), and the seeds'
published figures are put beside the predictions with what explains the differences.

Only the calibration's efficiency factors travel (``compute_efficiency``, ``memory_efficiency``,
``step_overhead_s``, and the quantized kernels' ``quantized_weight_efficiency``): the power model
stays each GPU's datasheet (idle and TDP from conf/gpu).
The simulator models kernels at a roofline with the fp16 scan's efficiencies (and AWQ's weights
read at the fraction fitted on the H200 kernel benchmark); what it still misses of an engine —
transformers + bitsandbytes LLM.int8 (seed 004) is far from any roofline, eager mode costs CPU time
per step (seed 000) — is carried by an **engine factor measured on the H200**: measured ÷
simulated on the H200 at the same workload and batch — hf INT8 threshold 0.0 (the study's grid 4)
for the A800, vLLM AWQ chat (grid 3's eager cells where measured, else grid 2's CUDA-graph ones)
for the T4 — applied to the seed-GPU prediction, assuming the engine's shortfall carries over from
the H200 to the seed's GPU. Every number here is a prediction, labelled so.

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

from orchestrator.store import load  # noqa: E402

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


def simulate(sweep: str, store: Path, overrides: List[str]) -> pd.DataFrame:
    """Run ``+sweep=<sweep>`` on the simulator (resumes: a complete store is not run again)."""
    cmd = [sys.executable, "-m", "orchestrator", f"+sweep={sweep}", "engine=simulated", f"name={sweep}_predicted",
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


Factors = Dict[tuple, Dict[str, float]]
"""(workload, batch) -> {"tok_s": measured ÷ simulated, "j_per_tok": measured ÷ simulated, "source": ...}."""


def _engine_option(config_json: str, engine: str, key: str):
    """One option of the engine block of a runs row's config (``engine.<engine>.<key>``)."""
    return json.loads(config_json)["engine"][engine].get(key)


def _ratios(m: pd.DataFrame, p: pd.DataFrame, source: str) -> Factors:
    out = {}
    for (wl, bs), g in m.groupby(["workload", "batch_size"]):
        q = p[(p["workload"] == wl) & (p["batch_size"] == bs)]
        if len(q):
            out[(str(wl), int(bs))] = {
                "tok_s": g["output_throughput_tok_s"].mean() / q["output_throughput_tok_s"].mean(),
                "j_per_tok": g["energy_per_1k_output_tokens_j"].mean() / q["energy_per_1k_output_tokens_j"].mean(),
                "source": source}
    return out


def hf_int8_factors(measured: Optional[Path], predicted_h200: Optional[Path]) -> Factors:
    """Mistral-7B hf INT8 with threshold 0.0 (pure, as seed 004) measured on the H200 ÷ the
    simulator's INT8 there, per (offline, batch); {} when either store lacks those cells."""
    if measured is None or predicted_h200 is None:
        return {}
    m, p = _ok_runs(measured), _ok_runs(predicted_h200)
    m = m[(m["engine"] == "hf") & (m["quantization"] == "int8") & (m["model"] == "mistral_7b")]
    m = m[pd.Series([float(_engine_option(c, "hf", "int8_threshold")) == 0.0 for c in m["config_json"]],
                    index=m.index, dtype=bool)]
    p = p[(p["quantization"] == "int8") & (p["model"] == "mistral_7b") & (p["gpu"] == "h200")]
    return _ratios(m, p, "hf INT8 threshold 0.0")


def awq_factors(measured: Optional[Path], predicted_h200: Optional[Path]) -> Factors:
    """Llama-2-7B AWQ chat measured on the H200 with vLLM ÷ the simulator's AWQ there, per
    (workload, max-num-seqs): from the eager cells (seed 000 ran ``enforce_eager``) where the store
    has them, else from the CUDA-graph ones (said in ``source``); {} when it has neither."""
    if measured is None or predicted_h200 is None:
        return {}
    m, p = _ok_runs(measured), _ok_runs(predicted_h200)
    m = m[(m["engine"] == "vllm") & (m["quantization"] == "awq") & (m["model"] == "llama2_7b")
          & m["workload"].str.startswith("chat")]
    eager = pd.Series([bool(_engine_option(c, "vllm", "enforce_eager")) for c in m["config_json"]], index=m.index,
                      dtype=bool)
    p = p[(p["quantization"] == "awq") & (p["model"] == "llama2_7b") & (p["gpu"] == "h200")]
    graphs = _ratios(m[~eager], p, "vLLM AWQ with CUDA graphs")
    return {**graphs, **_ratios(m[eager], p, "vLLM AWQ eager")}


def rows_for(pub: Published, pred: pd.DataFrame, factors: Factors) -> dict:
    cell = pred[(pred["workload"] == pub.workload) & (pred["batch_size"] == pub.batch_size)].iloc[0]
    tok_s, jk = float(cell["output_throughput_tok_s"]), float(cell["energy_per_1k_output_tokens_j"])
    row = {**asdict(pub), "predicted_output_tok_s": tok_s, "predicted_request_rps": float(cell["request_throughput_rps"]),
           "predicted_ttft_p50_ms": float(cell["ttft_p50_ms"]), "predicted_tpot_p50_ms": float(cell["tpot_p50_ms"]),
           "predicted_energy_per_1k_output_tokens_j": jk, "predicted_saturated": bool(cell["saturated"]),
           "predicted_output_tokens_per_request": float(cell["output_tokens_mean_cfg"]),
           "offered_rate_rps": float(cell["offered_rate_rps"]) if pd.notna(cell.get("offered_rate_rps")) else None}
    f = factors.get((pub.workload, pub.batch_size))
    row["factor_source"] = f["source"] if f else None
    row["predicted_factored_output_tok_s"] = tok_s * f["tok_s"] if f else None
    row["predicted_factored_request_rps"] = row["predicted_request_rps"] * f["tok_s"] if f else None
    row["predicted_factored_energy_per_1k_output_tokens_j"] = jk * f["j_per_tok"] if f else None
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
        factored = row["predicted_factored_request_rps"]
        also = f" ({factored:.2f} × the H200 factor)" if factored is not None else ""
        why.append(f"predicted saturated: {row['predicted_request_rps']:.2f} req/s{also} served of "
                   f"{row['offered_rate_rps']:.0f} offered (the queue grows; TTFT is queueing)")
    if pub.energy_per_request_j and pub.energy_per_1k_output_tokens_j:
        implied = pub.energy_per_request_j / pub.energy_per_1k_output_tokens_j * 1000
        why.append(f"the seed's J/request ÷ J/token implies {implied:.2f} tokens per request")
    if row["predicted_factored_output_tok_s"] is None:
        why.append("roofline of 8-bit weights (vLLM-like), not bitsandbytes: no H200 hf INT8 factor measured yet"
                   if pub.seed == SEED_A800 else "roofline of 4-bit weights: no H200 AWQ factor measured yet")
    return "; ".join(why)


def fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}"


def _factor_note(name: str, factors: Factors) -> str:
    if not factors:
        return ""
    parts = [f"{wl} {b}: {f['tok_s']:.3f} ({f['source']})" for (wl, b), f in sorted(factors.items())]
    return f"H200 {name} factors (measured ÷ simulated tok/s): " + ", ".join(parts) + "."


def _md_row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _t4_lines(rows: List[dict]) -> List[str]:
    lines = ["| workload | max-num-seqs | seed tok/s | predicted tok/s | × H200 AWQ factor | seed req/s | predicted "
             "req/s | × H200 AWQ factor | seed TTFT p50 ms | predicted | seed TPOT p50 ms | predicted "
             "| predicted J/1k out tok | × H200 AWQ factor | why they differ |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        cells = [r["workload"], r["batch_size"], fmt(r["output_tok_s"]), fmt(r["predicted_output_tok_s"]) + " †",
                 fmt(r["predicted_factored_output_tok_s"]) + " †", fmt(r["request_rps"], 2),
                 fmt(r["predicted_request_rps"], 2) + " †", fmt(r["predicted_factored_request_rps"], 2) + " †",
                 fmt(r["ttft_p50_ms"], 0), fmt(r["predicted_ttft_p50_ms"], 0) + " †", fmt(r["tpot_p50_ms"], 2),
                 fmt(r["predicted_tpot_p50_ms"], 2) + " †",
                 fmt(r["predicted_energy_per_1k_output_tokens_j"], 0) + " †",
                 fmt(r["predicted_factored_energy_per_1k_output_tokens_j"], 0) + " †", r["why"]]
        lines.append(_md_row(cells))
    return lines


def _a800_lines(rows: List[dict]) -> List[str]:
    lines = ["| batch | seed tok/s | predicted (roofline) | × H200 hf factor | seed J/1k tok | predicted "
             "(roofline) | × H200 hf factor | why they differ |", "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(_md_row([r["batch_size"], fmt(r["output_tok_s"], 2), fmt(r["predicted_output_tok_s"]) + " †",
                              fmt(r["predicted_factored_output_tok_s"], 2) + " †",
                              fmt(r["energy_per_1k_output_tokens_j"], 0),
                              fmt(r["predicted_energy_per_1k_output_tokens_j"], 0) + " †",
                              fmt(r["predicted_factored_energy_per_1k_output_tokens_j"], 0) + " †", r["why"]]))
    return lines


def markdown(rows: List[dict], calibration: Path, awq: Factors, hf: Factors) -> str:
    lines = ["# The seeds' hardware, predicted (not measured)", "",
             f"Simulator efficiency factors from `{calibration}` (fitted on the H200 study's fp16 offline scan); "
             "each GPU's datasheet power model. Generated by `scripts/seed_predictions.py`. The factors "
             "come from vLLM with CUDA graphs on a Hopper GPU: on a T4 in eager mode (seed 000) the per-step "
             "CPU cost is larger, so predicted TPOT is a floor; the study's grid 3 (eager vs graphs on the "
             "H200) measures that cost. What the simulator still misses of an engine "
             "(bitsandbytes, eager mode) is carried by an **engine factor "
             "measured on the H200** (measured ÷ simulated there, same engine, quantization, workload and batch), "
             "which assumes the kernel's shortfall carries over from the H200 to the seed's GPU. An empty "
             "TTFT/TPOT: no measured request finished before the drain limit (all cancelled).", ""]
    lines += [f"## Seed {SEED_T4}", ""] + _t4_lines([r for r in rows if r["seed"] == SEED_T4])
    lines += ["", f"## Seed {SEED_A800}", ""] + _a800_lines([r for r in rows if r["seed"] == SEED_A800])
    lines += ["", "![each seed's published tok/s beside the predictions](seeds.png)", "",
              "† predicted by the simulator, not measured."]
    lines += [n for n in (_factor_note("AWQ", awq), _factor_note("hf INT8", hf)) if n]
    return "\n".join(lines) + "\n"


def plot(rows: List[dict], path: Path) -> int:
    """``seeds.png``: each seed's published output tok/s beside the predictions: the T4
    chat cells as grouped bars, the A800 static batches as lines over batch size (log-log).
    Returns how many values it drew (a series without a value, e.g. no engine factor yet, draws none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = (("seed (published)", "output_tok_s", "#444444"), ("predicted †", "predicted_output_tok_s", "#1f77b4"),
              ("predicted × H200 engine factor †", "predicted_factored_output_tok_s", "#ff7f0e"))
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
    ap.add_argument("--measured", type=Path, help="a store with H200 hf INT8 Mistral cells (the study's)")
    ap.add_argument("--predicted-h200", type=Path, help="the simulated store of the same grid on the H200")
    ap.add_argument("--work", type=Path, required=True, help="where the two simulated seed stores go")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    overrides = efficiency_overrides(args.calibration)
    awq, hf = awq_factors(args.measured, args.predicted_h200), hf_int8_factors(args.measured, args.predicted_h200)
    predicted = {SEED_T4: simulate("seed_t4_awq", args.work / "seed_t4_awq", overrides),
                 SEED_A800: simulate("seed_a800_int8", args.work / "seed_a800_int8", overrides)}
    rows = [rows_for(p, predicted[p.seed], awq if p.seed == SEED_T4 else hf) for p in PUBLISHED]
    args.out.mkdir(parents=True, exist_ok=True)
    keyed = {name: {f"{wl}/{b}": f for (wl, b), f in fs.items()} for name, fs in (("awq", awq), ("hf_int8", hf))}
    (args.out / "seeds.json").write_text(json.dumps({"overrides": overrides, "engine_factors": keyed, "rows": rows},
                                                    indent=1, default=str))
    (args.out / "seeds.md").write_text(markdown(rows, args.calibration, awq, hf))
    plot(rows, args.out / "seeds.png")
    print(f"wrote {args.out / 'seeds.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
