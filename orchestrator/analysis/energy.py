"""Energy per batch size, gross and net side by side (the second seed's table, and more).

Gross energy is the GPU's energy-counter delta over the measured window (J); net energy is gross
minus the idle baseline (idle W x window s): what the work itself cost. Per-request figures
divide by the requests' worth of output tokens emitted in the window (``worker.tables``; older
stores: requests completed in it); per-1k-token figures by output tokens emitted in it (x 1000). ``throughput_scaling_x`` is output tok/s over the baseline's; ``change_*_pct`` are
relative to the same series at its baseline batch size (``baseline_batch_size``: the given one,
else the series' smallest). Modeled energy (simulated rows, ``energy_measured`` false) is shown
like measured energy; the ``simulated`` column says which is which.
"""
from __future__ import annotations

import json

import pandas as pd

from orchestrator.analysis.tables import SERIES_KEYS, with_baseline, with_hit_pct
from orchestrator.store.schema import (
    ENERGY_J,
    ENERGY_NOTE,
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_1K_PROMPT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    ENERGY_SOURCE,
    GPU_UTIL_MEAN_PCT,
    IDLE_POWER_W,
    MEAN_POWER_W,
    NET_ENERGY_J,
    NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
    NET_ENERGY_PER_REQUEST_J,
    OUTPUT_THROUGHPUT_TOK_S,
    PREFILL_ENERGY_SHARE,
    WINDOW_S,
)

PREFILL_ENERGY_PCT = "prefill_energy_pct"
"""Derived column: ``prefill_energy_share`` × 100 (prefill's share of the steps' net energy, a mean over
repeats), in the table where some point has it."""

ENERGY_METRICS = [
    ENERGY_PER_REQUEST_J, NET_ENERGY_PER_REQUEST_J,
    ENERGY_PER_1K_OUTPUT_TOKENS_J, NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
]


def energy_table(points: pd.DataFrame, baseline_batch: int | None = None) -> pd.DataFrame:
    """Per series and batch size: output tok/s, gross/net J per request and per 1k output
    tokens, GPU util (%), mean and idle power (W), changes vs ``baseline_batch_size`` (%),
    throughput scaling (x); gross J per 1k prompt tokens and the prefix cache's hit rate (%) where
    some point has them, and prefill's share of the net energy in steps (%, ``PREFILL_ENERGY_PCT``)
    where some point's energy was attributed. Energy columns are NaN where ``energy_available`` is false."""
    df = points.copy()
    prompt = [ENERGY_PER_1K_PROMPT_TOKENS_J] if ENERGY_PER_1K_PROMPT_TOKENS_J in df else []
    share = [PREFILL_ENERGY_SHARE] if PREFILL_ENERGY_SHARE in df else []
    masked = ENERGY_METRICS + prompt + share + [MEAN_POWER_W, ENERGY_J, NET_ENERGY_J]
    df.loc[~df["energy_available"], masked] = float("nan")
    df = with_baseline(df, baseline_batch, ENERGY_METRICS + [OUTPUT_THROUGHPUT_TOK_S])
    df["throughput_scaling_x"] = df[OUTPUT_THROUGHPUT_TOK_S] / df["base_output_throughput_tok_s"]
    keep = SERIES_KEYS + [
        "batch_size", "flags", "cell_id", "simulated", "energy_available", "energy_measured", ENERGY_SOURCE,
        ENERGY_NOTE, "baseline_batch_size",
        OUTPUT_THROUGHPUT_TOK_S, *ENERGY_METRICS, GPU_UTIL_MEAN_PCT, MEAN_POWER_W, IDLE_POWER_W,
        ENERGY_J, NET_ENERGY_J, WINDOW_S, "throughput_scaling_x",
    ] + [f"change_{m}_pct" for m in ENERGY_METRICS]
    if prompt and df[ENERGY_PER_1K_PROMPT_TOKENS_J].notna().any():
        keep.append(ENERGY_PER_1K_PROMPT_TOKENS_J)
    if share and df[PREFILL_ENERGY_SHARE].notna().any():
        df[PREFILL_ENERGY_PCT] = df[PREFILL_ENERGY_SHARE] * 100.0
        keep.append(PREFILL_ENERGY_PCT)
    return with_hit_pct(df[keep], df)


def energy_sources(points: pd.DataFrame) -> pd.DataFrame:
    """energy_source -> number of points and the first note (why there is none, or how read)."""
    grouped = points.groupby(ENERGY_SOURCE, dropna=False)
    return pd.DataFrame({"n_points": grouped.size(), "note": grouped[ENERGY_NOTE].first()}).reset_index()


GPU_SHARE_COLUMNS = ["workload", "gpu", "series", "batch_size", "repeat", "cell_id", "gpus", ENERGY_J, "shares",
                     "max_share_pct", "mismatched_gpus"]


def gpu_shares(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per ok cell whose energy is summed over several GPUs (``energy_per_gpu_j``: a cell
    over N GPUs, or an endpoint's GPUs): how many, the cell's energy (J), each GPU's share of it
    (``"GPU-aaaa…: 50.2%"``, by UUID order), the largest share (%) and the GPUs whose own counter
    disagreed with their own integrated power (``energy_mismatch_gpus``); empty where none is."""
    if "energy_per_gpu_j" not in ok or ok.empty:
        return pd.DataFrame(columns=GPU_SHARE_COLUMNS)
    rows = []
    for r in ok.to_dict("records"):
        text = r.get("energy_per_gpu_j")
        per = json.loads(text) if isinstance(text, str) and text else {}
        known = {u: float(v) for u, v in sorted(per.items()) if v is not None}
        if len(per) < 2 or not known or sum(known.values()) <= 0:
            continue
        total = sum(known.values())
        off = r.get("energy_mismatch_gpus")
        rows.append({
            "workload": r["workload"], "gpu": r["gpu"], "series": r["series"], "batch_size": r["batch_size"],
            "repeat": r["repeat"], "cell_id": r["cell_id"], "gpus": len(per), ENERGY_J: total,
            "shares": ", ".join(f"{u[:12]}…: {100 * v / total:.1f}%" for u, v in known.items()),
            "max_share_pct": 100 * max(known.values()) / total,
            "mismatched_gpus": ", ".join(json.loads(off)) if isinstance(off, str) and off else "",
        })
    return pd.DataFrame(rows, columns=GPU_SHARE_COLUMNS)
