"""Two sweeps side by side: the same cells matched on the axes both share.

An axis (model, quantization, gpu, workload, batch_size) whose values in A and B have nothing
in common is the **compared** axis (e.g. gpu t4 vs a800); the others are the match keys. When no
axis differs (same grid, e.g. two vLLM versions) every axis is a key. Metric ``m`` appears as
``m_a``, ``m_b`` and ``change_m_pct = (B - A) / A x 100``. A share (``SHARE_METRICS``, a fraction
0-1, e.g. prefill's share of the net energy in steps: measured steps for vLLM, the roofline's for the
simulator) changes in percentage points: ``change_m_pts = (B - A) x 100``; a store from before the
column has it NaN (the loader fills columns a file lacks with nulls).

For each repeat metric ``m`` (``repeats.REPEAT_METRICS``) the 95% intervals of both sides come
along (``m_ci95_low_a`` ...) and ``significant_m`` says whether the difference is significant:
True when the two Student-t 95% intervals do not overlap, False when they overlap (not
significant), missing (``pd.NA``: unknown) when either side has no interval (one repeat).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from orchestrator.analysis.dataset import SweepError, pct_change
from orchestrator.analysis.repeats import REPEAT_METRICS
from orchestrator.store.schema import (
    E2E_P50_MS,
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    MEAN_POWER_W,
    NET_ENERGY_PER_REQUEST_J,
    OUTPUT_THROUGHPUT_TOK_S,
    PREFILL_ENERGY_SHARE,
    REQUEST_THROUGHPUT_RPS,
    TPOT_P50_MS,
    TPOT_P99_MS,
    TTFT_P50_MS,
    TTFT_P99_MS,
)

AXES = ["model", "quantization", "gpu", "workload", "batch_size"]
COMPARE_METRICS = [
    OUTPUT_THROUGHPUT_TOK_S, REQUEST_THROUGHPUT_RPS, TTFT_P50_MS, TTFT_P99_MS, TPOT_P50_MS,
    TPOT_P99_MS, E2E_P50_MS, ENERGY_PER_REQUEST_J, NET_ENERGY_PER_REQUEST_J,
    ENERGY_PER_1K_OUTPUT_TOKENS_J, "energy_per_output_token_j", "net_energy_per_output_token_j", MEAN_POWER_W,
]
SHARE_METRICS = [PREFILL_ENERGY_SHARE]
"""Fractions (0-1) compared side by side; their change is in percentage points (``change_m_pts``)."""
INTERVALS = [f"{m}_{s}" for m in REPEAT_METRICS for s in ("ci95_low", "ci95_high")]
CARRY = ["flags", "cell_id", "simulated", "energy_available", "energy_measured", "series", "n_repeats", "engine"]


@dataclass
class Comparison:
    """``table``: matched points; ``keys``: axes matched on; ``compared``: axes that differ;
    ``only_a``/``only_b``: points without a partner."""

    table: pd.DataFrame
    keys: list[str]
    compared: list[str]
    only_a: int
    only_b: int
    variants: bool = False  # a side ran several series on one point of the axes (see compare_points)


def differing_axes(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Axes whose value sets in A and B are disjoint."""
    return [ax for ax in AXES if not set(a[ax].astype(str)) & set(b[ax].astype(str))]


def significance(table: pd.DataFrame, metric: str) -> pd.Series:
    """Nullable boolean per matched point: True when the 95% intervals of A and B for ``metric``
    do not overlap, False when they do, NA when either side has no interval."""
    lo_a, hi_a, lo_b, hi_b = (table[f"{metric}_ci95_{s}_{side}"].astype(float)
                              for side in ("a", "b") for s in ("low", "high"))
    known = lo_a.notna() & hi_a.notna() & lo_b.notna() & hi_b.notna()
    apart = (hi_a < lo_b) | (hi_b < lo_a)
    return apart.astype("boolean").where(known, pd.NA)


def points_change(new: pd.Series, base: pd.Series) -> pd.Series:
    """The change of a share (0-1) in percentage points: ``(new - base) x 100``; NaN where either is missing."""
    return (new.astype(float) - base.astype(float)) * 100.0


def shown_shares(table: pd.DataFrame) -> list[str]:
    """The ``SHARE_METRICS`` that either side of a comparison's ``table`` has on some matched point
    (none where neither store has steps: its report shows no share column)."""
    return [m for m in SHARE_METRICS if table[[f"{m}_a", f"{m}_b"]].notna().any(axis=None)]


def compare_points(a: pd.DataFrame, b: pd.DataFrame) -> Comparison:
    """Match ``batch_points`` of two sweeps and compute changes and significance (see module doc).

    A side may hold several series on one point of the axes (variants: e.g. CUDA graphs and
    eager, or two bitsandbytes thresholds). When only one side does, each of its variants is
    matched to the other side's single point (a simulator that cannot tell the variants apart
    predicts one number for all); when both do, variants are matched by their identity digest
    (``variant``: the same measurement in both sweeps) where the sides share one, else by series
    label (what tells them apart, e.g. two engines' runs of one grid). Either
    way no variant is dropped, and ``variants`` tells the report to show the series."""
    compared = differing_axes(a, b)
    keys = [ax for ax in AXES if ax not in compared]
    if not keys:
        raise SweepError("the two sweeps share no value on any axis: no cells to match")
    cols = list(dict.fromkeys(keys + compared + COMPARE_METRICS + SHARE_METRICS + INTERVALS + CARRY))
    several_a, several_b = (side.duplicated(keys + compared, keep=False).any() for side in (a, b))
    pair = None
    if several_a and several_b:  # the same variant (identity digest) where the sides share one, else its label
        pair = "variant" if set(a["variant"]) & set(b["variant"]) - {""} else "series"
        cols = list(dict.fromkeys(cols + ["variant"]))
    on = keys + [pair] if pair else keys
    left = a[cols].drop_duplicates(keys + compared + ["series"])
    right = b[cols].drop_duplicates(keys + compared + ["series"])
    if pair:  # a key: one column, not series_a / series_b
        left, right = left.assign(series_a=left["series"]), right.assign(series_b=right["series"])
        if pair == "variant":
            left, right = left.drop(columns="series"), right.drop(columns="series")
    table = left.merge(right, on=on, how="inner", suffixes=("_a", "_b"))
    for m in COMPARE_METRICS:
        table[f"change_{m}_pct"] = pct_change(table[f"{m}_b"], table[f"{m}_a"])
    for m in SHARE_METRICS:
        table[f"change_{m}_pts"] = points_change(table[f"{m}_b"], table[f"{m}_a"])
    for m in REPEAT_METRICS:
        table[f"significant_{m}"] = significance(table, m)
    matched_a = left.merge(table[on].drop_duplicates(), on=on, how="inner")
    matched_b = right.merge(table[on].drop_duplicates(), on=on, how="inner")
    table = table.sort_values(keys + ["series_a"]).reset_index(drop=True)
    return Comparison(table=table, keys=keys, compared=compared, only_a=len(left) - len(matched_a),
                      only_b=len(right) - len(matched_b), variants=bool(several_a or several_b))
