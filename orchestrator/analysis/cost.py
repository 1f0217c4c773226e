"""Monthly energy, cost and carbon of serving a request volume at each batch size.

``kWh/month = J/request x requests/month / 3.6e6``; ``cost = kWh x price/kWh``;
``kgCO2/month = kWh x grid gCO2/kWh / 1000``. GPU board energy only: host, cooling and PUE are
not included. Gross energy includes the idle draw during the window (what the meter bills);
net excludes it (what the work alone costs). Points with energy (measured or modeled:
``simulated`` says which) are costed; savings are against each series' ``baseline_batch_size``.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from orchestrator.analysis.tables import SERIES_KEYS, with_baseline
from orchestrator.store.schema import ENERGY_PER_REQUEST_J, NET_ENERGY_PER_REQUEST_J

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class CostAssumptions:
    """Request volume (requests/month), energy price (currency/kWh) and grid intensity (gCO2/kWh)."""

    requests_per_month: float = 1_000_000
    price_per_kwh: float = 0.10
    grid_gco2_per_kwh: float = 400.0


def monthly_kwh(j_per_request, requests_per_month: float):
    """Energy per month (kWh) of ``requests_per_month`` requests at ``j_per_request`` J each."""
    return j_per_request * requests_per_month / J_PER_KWH


def cost_table(points: pd.DataFrame, assumptions: CostAssumptions, baseline_batch: int | None = None) -> pd.DataFrame:
    """Per series and batch size (points with energy only): gross and net kWh/month,
    cost/month, kgCO2/month, and the saving against ``baseline_batch_size`` (same units; a
    positive saving means less than the baseline; ``saving_pct`` in %)."""
    df = points.copy()
    for prefix, col in (("", ENERGY_PER_REQUEST_J), ("net_", NET_ENERGY_PER_REQUEST_J)):
        joules = df[col].where(df["energy_available"])
        df[f"{prefix}kwh_per_month"] = monthly_kwh(joules, assumptions.requests_per_month)
        df[f"{prefix}cost_per_month"] = df[f"{prefix}kwh_per_month"] * assumptions.price_per_kwh
        df[f"{prefix}kg_co2_per_month"] = df[f"{prefix}kwh_per_month"] * assumptions.grid_gco2_per_kwh / 1000.0
    metrics = ["kwh_per_month", "cost_per_month", "kg_co2_per_month", "net_kwh_per_month", "net_cost_per_month"]
    df = with_baseline(df, baseline_batch, metrics)
    df = df[df["energy_available"]].copy()
    for m in ("kwh_per_month", "cost_per_month", "kg_co2_per_month", "net_cost_per_month"):
        df[f"saving_{m}"] = df[f"base_{m}"] - df[m]
    df["saving_pct"] = df["saving_kwh_per_month"] / df["base_kwh_per_month"] * 100.0
    keep = SERIES_KEYS + ["batch_size", "baseline_batch_size", "flags", "cell_id", "simulated", ENERGY_PER_REQUEST_J,
                          NET_ENERGY_PER_REQUEST_J, "kwh_per_month", "net_kwh_per_month", "cost_per_month",
                          "net_cost_per_month", "kg_co2_per_month", "net_kg_co2_per_month", "saving_kwh_per_month",
                          "saving_cost_per_month", "saving_net_cost_per_month", "saving_kg_co2_per_month", "saving_pct"]
    return df[keep].reset_index(drop=True)
