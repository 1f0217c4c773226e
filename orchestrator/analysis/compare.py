"""Two sweeps side by side: the same cells matched on the axes both share.

An axis (model, quantization, gpu, workload, batch_size) whose values in A and B have nothing
in common is the **compared** axis (e.g. gpu t4 vs a800); the others are the match keys. When no
axis differs (same grid, e.g. two vLLM versions) every axis is a key. Metric ``m`` appears as
``m_a``, ``m_b`` and ``change_m_pct = (B - A) / A x 100``.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from orchestrator.analysis.dataset import SweepError, pct_change

AXES = ["model", "quantization", "gpu", "workload", "batch_size"]
COMPARE_METRICS = [
    "output_throughput_tok_s", "request_throughput_rps", "ttft_p50_ms", "ttft_p99_ms", "tpot_p50_ms",
    "tpot_p99_ms", "e2e_p50_ms", "energy_per_request_j", "net_energy_per_request_j",
    "energy_per_1k_output_tokens_j", "mean_power_w",
]
CARRY = ["flags", "cell_id", "simulated", "energy_measured", "series"]


@dataclass
class Comparison:
    """``table``: matched points; ``keys``: axes matched on; ``compared``: axes that differ;
    ``only_a``/``only_b``: points without a partner."""

    table: pd.DataFrame
    keys: list[str]
    compared: list[str]
    only_a: int
    only_b: int


def differing_axes(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Axes whose value sets in A and B are disjoint."""
    return [ax for ax in AXES if not set(a[ax].astype(str)) & set(b[ax].astype(str))]


def compare_points(a: pd.DataFrame, b: pd.DataFrame) -> Comparison:
    """Match ``batch_points`` of two sweeps and compute changes (see module doc)."""
    compared = differing_axes(a, b)
    keys = [ax for ax in AXES if ax not in compared]
    if not keys:
        raise SweepError("the two sweeps share no value on any axis: no cells to match")
    cols = keys + compared + COMPARE_METRICS + CARRY
    left = a[cols].drop_duplicates(keys + compared)
    right = b[cols].drop_duplicates(keys + compared)
    table = left.merge(right, on=keys, how="inner", suffixes=("_a", "_b"))
    for m in COMPARE_METRICS:
        table[f"change_{m}_pct"] = pct_change(table[f"{m}_b"], table[f"{m}_a"])
    matched_a = left.merge(table[keys].drop_duplicates(), on=keys, how="inner")
    matched_b = right.merge(table[keys].drop_duplicates(), on=keys, how="inner")
    table = table.sort_values(keys).reset_index(drop=True)
    return Comparison(table=table, keys=keys, compared=compared, only_a=len(left) - len(matched_a),
                      only_b=len(right) - len(matched_b))
