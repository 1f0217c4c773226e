"""Data checks: do a sweep's per-request rows agree with its per-cell ``runs`` rows?

For every ok cell, from the ``requests`` table: the number of rows (vs ``n_requests_total``),
measured ok requests (vs ``n_requests_ok``), and TTFT p50 / E2E p99 over measured ok requests
(vs ``ttft_p50_ms`` / ``e2e_p99_ms``, same linear-interpolation percentile as ``metrics``).
A cell agrees when the counts are equal and the percentiles match to 1e-6 relative.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.analysis.dataset import SweepData

REL_TOL = 1e-6
COLUMNS = ["cell_id", "phase", "status", "ttft_ms", "e2e_ms"]


def request_stats(data: SweepData) -> pd.DataFrame:
    """Per cell with request rows: ``rows``, ``measured_ok``, ``ttft_p50_ms``, ``e2e_p99_ms``."""
    req = data.requests(COLUMNS).to_pandas(strings_to_categorical=True)
    if req.empty:
        return pd.DataFrame(columns=["cell_id", "rows", "measured_ok", "ttft_p50_ms", "e2e_p99_ms"])
    rows = req.groupby("cell_id", observed=True).size().rename("rows")
    good = req[(req["phase"] == "measured") & (req["status"] == "ok")]
    by = good.groupby("cell_id", observed=True)
    stats = pd.concat([
        rows,
        by.size().rename("measured_ok"),
        by["ttft_ms"].quantile(0.5).rename("ttft_p50_ms"),
        by["e2e_ms"].quantile(0.99).rename("e2e_p99_ms"),
    ], axis=1)
    stats.index = stats.index.astype(str)
    return stats.rename_axis("cell_id").reset_index()


def _close(a: pd.Series, b: pd.Series) -> pd.Series:
    a, b = a.astype(float), b.astype(float)
    both_nan = a.isna() & b.isna()
    return both_nan | (np.abs(a - b) <= REL_TOL * np.maximum(np.abs(a), np.abs(b)).clip(lower=1e-12))


def request_checks(data: SweepData) -> pd.DataFrame:
    """One row per ok cell: runs-side and requests-side values and ``agrees``."""
    ok = data.ok[["cell_id", "series", "workload", "batch_size", "flags", "simulated", "n_requests_total",
                  "n_requests_ok", "ttft_p50_ms", "e2e_p99_ms"]]
    stats = request_stats(data)
    df = ok.merge(stats, on="cell_id", how="left", suffixes=("", "_requests"))
    df["rows"] = df["rows"].fillna(0).astype(int)
    df["measured_ok"] = df["measured_ok"].fillna(0).astype(int)
    df["agrees"] = (
        (df["rows"] == df["n_requests_total"])
        & (df["measured_ok"] == df["n_requests_ok"])
        & _close(df["ttft_p50_ms"], df["ttft_p50_ms_requests"])
        & _close(df["e2e_p99_ms"], df["e2e_p99_ms_requests"])
    )
    return df.reset_index(drop=True)
