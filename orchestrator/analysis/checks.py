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
from orchestrator.store.schema import E2E_MS, E2E_P99_MS, N_REQUESTS_OK, N_REQUESTS_TOTAL, TTFT_MS, TTFT_P50_MS

REL_TOL = 1e-6
COLUMNS = ["cell_id", "phase", "status", TTFT_MS, E2E_MS]


def request_stats(data: SweepData) -> pd.DataFrame:
    """Per cell with request rows: ``rows``, ``measured_ok``, ``ttft_p50_ms``, ``e2e_p99_ms``."""
    req = data.requests(COLUMNS).to_pandas(strings_to_categorical=True)
    if req.empty:
        return pd.DataFrame(columns=["cell_id", "rows", "measured_ok", TTFT_P50_MS, E2E_P99_MS])
    rows = req.groupby("cell_id", observed=True).size().rename("rows")
    good = req[(req["phase"] == "measured") & (req["status"] == "ok")]
    by = good.groupby("cell_id", observed=True)
    stats = pd.concat([
        rows,
        by.size().rename("measured_ok"),
        by[TTFT_MS].quantile(0.5).rename(TTFT_P50_MS),
        by[E2E_MS].quantile(0.99).rename(E2E_P99_MS),
    ], axis=1)
    stats.index = stats.index.astype(str)
    return stats.rename_axis("cell_id").reset_index()


def _close(a: pd.Series, b: pd.Series) -> pd.Series:
    a, b = a.astype(float), b.astype(float)
    both_nan = a.isna() & b.isna()
    return both_nan | (np.abs(a - b) <= REL_TOL * np.maximum(np.abs(a), np.abs(b)).clip(lower=1e-12))


def request_checks(data: SweepData) -> pd.DataFrame:
    """One row per ok cell: runs-side and requests-side values and ``agrees``."""
    ok = data.ok[["cell_id", "series", "workload", "batch_size", "flags", "simulated", N_REQUESTS_TOTAL,
                  N_REQUESTS_OK, TTFT_P50_MS, E2E_P99_MS]]
    stats = request_stats(data)
    df = ok.merge(stats, on="cell_id", how="left", suffixes=("", "_requests"))
    df["rows"] = df["rows"].fillna(0).astype(int)
    df["measured_ok"] = df["measured_ok"].fillna(0).astype(int)
    df["agrees"] = (
        (df["rows"] == df[N_REQUESTS_TOTAL])
        & (df["measured_ok"] == df[N_REQUESTS_OK])
        & _close(df[TTFT_P50_MS], df["ttft_p50_ms_requests"])
        & _close(df[E2E_P99_MS], df["e2e_p99_ms_requests"])
    )
    return df.reset_index(drop=True)
