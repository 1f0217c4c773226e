"""Sections 4 (scaling laws), 5 (roofline) and 6 (VRAM budget)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.scaling import DEFAULT_TOLERANCE, FIT_METRICS
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import Col, col, dagger, heading, para, sim_legend, table
from orchestrator.report.result_sections import BATCH, FLAGS, SERIES
from orchestrator.report.summary import _span
from orchestrator.store.schema import OUTPUT_THROUGHPUT_TOK_S

DIMINISHING_EXPONENT = 0.5
"""Throughput returns count as diminishing once doubling the batch adds < 41% (2^0.5)."""


def _range(lo, hi) -> str:
    return fmt.MISSING if fmt.is_missing(lo) else f"{fmt.batch(lo)}–{fmt.batch(hi)}"


def fit_cols(energy: bool) -> list[Col]:
    exp = ("α", "alpha") if energy else ("k", "exponent")
    hexp = ("holds_alpha" if energy else "holds_exponent")
    return [
        col("workload", "workload", "text"), col("GPU", "gpu", "text"), SERIES, FLAGS,
        col("n", "n_points", "batch"), Col("BS range", lambda r: _range(r.bs_min, r.bs_max)),
        col("C", "c"), Col(exp[0], lambda r: fmt.num(getattr(r, exp[1]), 3)), Col("R²", lambda r: fmt.num(r.r2, 3)),
        Col("holds for BS", lambda r: _range(r.holds_bs_min, r.holds_bs_max)),
        Col(f"{exp[0]} there", lambda r: fmt.num(getattr(r, hexp), 3)),
        Col("R² there", lambda r: fmt.num(r.holds_r2, 3)),
        col("breaks at BS", "breaks_at_bs", "batch"), col("deviation there", "deviation_pct", "pct"),
    ]


def _two(v) -> str:
    return fmt.num(v, 2)


def _single_fit_sentence(f: pd.Series, name: str, column: str, energy: bool) -> str:
    text = f"{name} = {_two(f[column])} (R² {fmt.num(f['r2'], 3)}). "
    if pd.notna(f["breaks_at_bs"]):
        worse = f["deviation_pct"] > 0 if energy else f["deviation_pct"] < 0
        return text + (f"The law holds within {DEFAULT_TOLERANCE:.0%} up to BS {fmt.batch(f['holds_bs_max'])} "
                       f"and breaks at BS {fmt.batch(f['breaks_at_bs'])}, {fmt.pct(f['deviation_pct'])} from the "
                       "extrapolated fit"
                       + (" (diminishing returns)." if worse else "."))
    if pd.notna(f["holds_c"]):
        return text + f"The law holds within {DEFAULT_TOLERANCE:.0%} over the whole swept range."
    return text + f"No range of ≥ 3 batch sizes is within {DEFAULT_TOLERANCE:.0%} of a power law."


def _fit_sentence(fits: pd.DataFrame, energy: bool) -> str:
    name, column = ("α", "alpha") if energy else ("k", "exponent")
    if len(fits) == 1:
        return _single_fit_sentence(fits.iloc[0], name, column, energy)
    whole = fits[fits["breaks_at_bs"].isna() & fits["holds_c"].notna()]
    broken = fits[fits["breaks_at_bs"].notna()]
    none = fits[fits["holds_c"].isna()]
    text = (f"Over {len(fits)} series {name} is {_span(fits[column], _two)} (median {_two(fits[column].median())}), "
            f"R² {_span(fits['r2'], lambda v: fmt.num(v, 3))}. ")
    parts = [(f"the law holds within {DEFAULT_TOLERANCE:.0%} over the whole swept range for {len(whole)} of "
              f"{len(fits)} series")]
    if len(broken):
        worse = int((broken["deviation_pct"] > 0).sum() if energy else (broken["deviation_pct"] < 0).sum())
        side = "above" if energy else "below"
        parts.append(f"for {len(broken)} it breaks at BS {_span(broken['breaks_at_bs'], fmt.batch)}, where the "
                     f"observed value lies {_span(broken['deviation_pct'])} from the extrapolated fit ({side} it — "
                     f"diminishing returns — for {worse} of them)")
    if len(none):
        parts.append(f"{len(none)} have no range of ≥ 3 batch sizes within {DEFAULT_TOLERANCE:.0%} of a power law")
    joined = "; ".join(parts)
    return text + joined[0].upper() + joined[1:] + "."


def _diminishing(a: Analysis) -> pd.DataFrame:
    le = a.local_exponents
    if le.empty:
        return le
    low = le[le["exponent"] < DIMINISHING_EXPONENT]
    first = low.groupby(["workload", "gpu", "series"], sort=False)["bs_to"].min()
    return first.rename("diminishing_from_bs").reset_index()


def scaling_section(a: Analysis) -> list[str]:
    out = heading(2, "4. Scaling laws")
    out += para("Fits of y ≈ C × BS^k by least squares on log y against log BS, per series with ≥ 2 batch sizes. "
                "For energy the seed's form E ≈ C / BS^α is used (α = −k); C is the fitted value at BS 1 in the "
                "metric's unit; R² is in log space. *Holds for BS*: the largest range from the smallest batch size "
                f"(≥ 3 points) where every point lies within {DEFAULT_TOLERANCE:.0%} of that range's own fit; "
                "*breaks at BS*: the next batch size, and how far its measurement lies from that fit's extrapolation.")
    out += sim_legend(a.points)
    for metric, unit in FIT_METRICS.items():
        energy = metric.startswith("energy")
        form = f"{unit} ≈ C / BS^α" if energy else f"{unit} ≈ C × BS^k"
        out += heading(3, form)
        fits = a.fits[metric]
        if fits.empty:
            out += para("Energy was not measured (or fewer than 2 batch sizes per series): no fit." if energy
                        else "Fewer than 2 batch sizes per series: no fit.")
            continue
        out += para(_fit_sentence(fits, energy))
        if not energy:
            dim = _diminishing(a)
            fits = fits.merge(dim, on=["workload", "gpu", "series"], how="left") if not dim.empty else fits.assign(
                diminishing_from_bs=np.nan)
            out += para(f"*Returns diminish from BS*: the first batch size whose step from the previous one has a "
                        f"local exponent below {DIMINISHING_EXPONENT} (doubling the batch adds < 41% throughput).")
            out += table(fits, fit_cols(False) + [col("returns diminish from BS", "diminishing_from_bs", "batch")])
        else:
            out += table(fits, fit_cols(True))
    return out


ROOF_COLS = [
    col("GPU", "gpu", "text"), col("matmul dtype", "activation_dtype", "text"),
    col("bandwidth (GB/s)", "bandwidth_gb_s"), col("peak (TFLOP/s)", "peak_tflops"),
    col("ridge point (FLOP/byte)", "ridge_flop_per_byte"),
]
POINT_COLS = [
    col("workload", "workload", "text"), SERIES, BATCH, FLAGS, col("effective batch", "effective_batch"),
    col("context tok", "context_tokens"), col("AI (FLOP/byte)", "intensity_flop_per_byte"),
    col("AI at BS (FLOP/byte)", "intensity_at_batch_size_flop_per_byte"), col("ridge", "ridge_flop_per_byte"),
    col("bound", "bound", "text"), col("ceiling tok/s", "ceiling_tok_s"),
    col("output tok/s", OUTPUT_THROUGHPUT_TOK_S),
    Col("achieved", lambda r: fmt.num(r.achieved_fraction * 100) + "%"),
    col("TFLOP/s", "achieved_tflops"), col("GB/s", "achieved_gb_s"),
]
RIDGE_COLS = [
    col("GPU", "gpu", "text"), Col("model/quant", lambda r: f"{r.model}/{r.quantization}{dagger(r)}"),
    col("context tok", "context_tokens", "batch"), col("ridge (FLOP/byte)", "ridge_flop_per_byte"),
    Col("decode batch to reach it", lambda r: "never (KV traffic per sequence outweighs its FLOPs)"
        if np.isinf(r.batch_to_ridge) else fmt.num(r.batch_to_ridge)),
    col("largest BS swept", "max_batch_swept", "batch"),
]


def roofline_section(a: Analysis) -> list[str]:
    out = heading(2, "5. Roofline")
    out += para("Decode arithmetic intensity (AI) of one step = FLOPs ÷ bytes moved, where a step of b sequences "
                "reads every weight once (quantized linears at their bits per weight, fp16 embeddings) plus the fp16 "
                "KV cache of b × context tokens, and does 2 × parameters FLOPs per sequence plus attention. b is the "
                "**effective** batch (the engine's mean running batch, ≥ 1); *AI at BS* uses the configured batch "
                "size. Ceiling = b ÷ max(bytes ÷ bandwidth, FLOPs ÷ peak) in tok/s; achieved = the cell's output tok/s "
                "÷ ceiling (prefill and scheduling also cost time, so 100% is not reachable).")
    out += sim_legend(a.roofline)
    out += table(a.roofs, ROOF_COLS)
    rb = a.ridge_batches
    never = int(np.isinf(rb["batch_to_ridge"]).sum())
    out += para(f"Batch needed for decode to become compute-bound: {len(rb) - never} of {len(rb)} model × quantization "
                f"× GPU × context combinations reach the ridge at some batch; {never} never do at their context.")
    out += table(rb, RIDGE_COLS)
    for gpu, g in a.roofline.groupby("gpu", sort=True):
        out += heading(3, gpu)
        mem = int((g["bound"] == "memory").sum())
        frac = g["achieved_fraction"] * 100
        top = g.loc[g["achieved_fraction"].idxmax()]
        out += para(f"{mem} of {len(g)} points are memory-bound at their effective batch. Achieved fraction of the "
                    f"ceiling: {_span(frac, lambda v: fmt.num(v) + '%')} (median {fmt.num(frac.median())}%); highest "
                    f"{fmt.num(top['achieved_fraction'] * 100)}% for {top['series']} · {top['workload']} at BS "
                    f"{fmt.batch(top['batch_size'])}.")
        out += table(g, POINT_COLS)
    return out


VRAM_COLS = [
    Col("model/quant", lambda r: f"{r.model}/{r.quantization}{dagger(r)}"), col("GPU", "gpu", "text"),
    col("context tok", "context_tokens", "batch"), col("weights GiB", "weights_gib"),
    Col("KV/request GiB", lambda r: fmt.num(r.kv_per_request_gib, 4)), col("activations GiB", "activations_gib"),
    col("overhead GiB", "overhead_gib"), col("usable GiB", "capacity_gib"),
    col("max batch that fits", "max_batch"),
    col("largest BS swept", "bs_max_swept", "batch"), col("GiB needed there", "total_at_bs_max_gib"),
    col("ok", "n_ok", "batch"), col("infeasible", "n_infeasible", "batch"), col("oom", "n_oom", "batch"),
    col("engine reported GiB", "measured_memory_gib"), col("predicted GiB there", "predicted_at_measured_gib"),
    col("check", "memory_check", "text"),
]


def _by_batch_cols(frame: pd.DataFrame) -> list[Col]:
    cols = [Col("model/quant", lambda r: f"{r.model}/{r.quantization}{dagger(r)}"), col("GPU", "gpu", "text"),
            col("context tok", "context_tokens", "batch")]
    for name in [c for c in frame.columns if c.startswith("bs_")]:
        bs = name[3:-4]
        cols.append(Col(f"BS {bs}", lambda r, n=name: fmt.num(getattr(r, n))
                        + ("" if getattr(r, n) <= r.capacity_gib else " ✗")))
    return cols + [col("usable GiB", "capacity_gib")]


def vram_section(a: Analysis) -> list[str]:
    out = heading(2, "6. VRAM budget")
    out += para("VRAM ≈ weights + KV per request × batch + activations + runtime overhead (GiB = 2^30 bytes). KV per "
                "request = 2 (K, V) × layers × KV heads × head dim × 2 bytes × context tokens, with context = the "
                "workload's mean input + output tokens; usable = GPU memory × gpu_memory_utilization. Unsupported "
                "quantization × GPU pairs are left out.")
    v = a.vram
    if v.empty:
        return out + para("No cell has a config to budget.")
    out += para(*_vram_sentences(v))
    if v["simulated"].any():
        out += para("† simulated: those combinations' ok / oom counts are the simulated engine's outcomes, "
                    "not a GPU's.")
    out += table(v, VRAM_COLS)
    out += heading(3, "Predicted GiB per batch size (✗: does not fit)")
    out += table(a.vram_by_batch, _by_batch_cols(a.vram_by_batch))
    return out


def _vram_sentences(v: pd.DataFrame) -> list[str]:
    out = [(f"{int((~v['fits_at_bs_max']).sum())} of {len(v)} combinations do not fit their largest swept batch "
            f"size; {int(v['n_infeasible'].sum())} cells were therefore not launched (infeasible).")]
    under = v[v["n_oom_within_fit"] > 0]
    if len(under):
        out.append(f"**The calculator underestimates** for {len(under)} combinations: "
                   f"{int(under['n_oom_within_fit'].sum())} "
                    "cells ran out of memory at a batch size it says fits.")
    over = v[v["n_ok_beyond_fit"] > 0]
    if len(over):
        out.append(f"It overestimates for {len(over)} combinations: {int(over['n_ok_beyond_fit'].sum())} cells ran ok "
                   "beyond its largest fitting batch.")
    reported = v[v["memory_check"] != "not reported"]
    if reported.empty:
        out.append("No ok cell reported GPU memory use (memory_used_max_mib is empty, e.g. for the simulated engine), "
                   "so the budget could not be checked against the engine.")
    else:
        counts = reported["memory_check"].value_counts()
        out.append(f"Against the engine's reported memory ({len(reported)} combinations): "
                   + ", ".join(f"{n} {k}" for k, n in counts.items())
                   + " (vLLM reserves gpu_memory_utilization of the GPU at start, so its reading is near the usable "
                     "GiB whatever the batch).")
    return out
