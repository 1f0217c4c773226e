"""Metric tables of a sweep: cell status, per-batch detail, and the baseline-vs-best summary.

Every function takes ``batch_points`` rows (one per series x batch size, see ``dataset``) and
returns a DataFrame; units are in the column names (``_ms``, ``_rps``, ``_tok_s``, ``_j``,
``_pct``). ``change_<metric>_pct`` is ``(value - baseline) / baseline x 100`` against the same
series at its baseline batch size, given in ``baseline_batch_size``: ``baseline_batch`` when one
is given (NaN, and no changes, for a series that did not run it), else the series' smallest
batch size (``dataset.baseline_sizes``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.analysis.dataset import GROUP_KEYS, HOW_MEASURED, baseline_sizes, pct_change
from orchestrator.store.schema import (
    E2E_P50_MS,
    E2E_P99_MS,
    ENERGY_PER_REQUEST_J,
    MEAN_RUNNING_BATCH,
    N_REQUESTS_MEASURED,
    N_REQUESTS_OK,
    OFFERED_RATE_RPS,
    OUTPUT_THROUGHPUT_TOK_S,
    OUTPUT_TOK_S_PER_GPU,
    OUTPUT_TOKENS_PER_REQUEST_MEAN,
    PREFIX_CACHE_HIT_RATE,
    REQUEST_THROUGHPUT_RPS,
    SATURATED,
    TENSOR_PARALLEL_SIZE,
    TPOT_P50_MS,
    TPOT_P99_MS,
    TTFT_P50_MS,
    TTFT_P99_MS,
)

SERIES_KEYS = GROUP_KEYS + ["series"]
PREFIX_CACHE_HIT_PCT = "prefix_cache_hit_pct"
"""Derived column: ``prefix_cache_hit_rate`` × 100, in tables where some point has a hit rate."""

SUMMARY_METRICS = [
    OUTPUT_THROUGHPUT_TOK_S, REQUEST_THROUGHPUT_RPS, TTFT_P50_MS, TPOT_P50_MS, ENERGY_PER_REQUEST_J,
]
"""What the executive summary compares (higher tok/s and req/s is better; lower the rest)."""

DETAIL_COLUMNS = [
    N_REQUESTS_MEASURED, N_REQUESTS_OK, "success_pct", REQUEST_THROUGHPUT_RPS, OFFERED_RATE_RPS,
    OUTPUT_THROUGHPUT_TOK_S, TTFT_P50_MS, TTFT_P99_MS, TPOT_P50_MS, TPOT_P99_MS,
    E2E_P50_MS, E2E_P99_MS, MEAN_RUNNING_BATCH, OUTPUT_TOKENS_PER_REQUEST_MEAN, "n_repeats",
]


def baseline_points(points: pd.DataFrame, baseline_batch: int | None) -> pd.DataFrame:
    """The baseline point of each series (one row per series at most)."""
    sizes = baseline_sizes(points, baseline_batch)
    return points[points["batch_size"] == sizes].drop_duplicates(SERIES_KEYS)


def with_baseline(points: pd.DataFrame, baseline_batch: int | None, metrics: list[str]) -> pd.DataFrame:
    """``points`` plus ``baseline_batch_size`` and, for each metric ``m``, ``base_<m>`` (the
    series' value at its baseline batch size) and ``change_<m>_pct``."""
    points = points.assign(baseline_batch_size=baseline_sizes(points, baseline_batch))
    base = baseline_points(points, baseline_batch)[SERIES_KEYS + metrics]
    base = base.rename(columns={m: f"base_{m}" for m in metrics})
    out = points.merge(base, on=SERIES_KEYS, how="left")
    for m in metrics:
        out[f"change_{m}_pct"] = pct_change(out[m], out[f"base_{m}"])
    return out


def status_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Cells whose status is not ``ok``: their axes, status, ``simulated`` and the first line of
    the reason."""
    bad = runs[runs["status"] != "ok"]
    reason = bad["error"].fillna("").astype(str).str.split("\n").str[0]
    cols = ["workload", "gpu", "model", "quantization", "batch_size", "repeat", "status", "cell_id", "simulated"]
    return bad[cols].assign(reason=reason.values).reset_index(drop=True)


def status_counts(runs: pd.DataFrame) -> pd.Series:
    """status -> number of cells (most frequent first)."""
    return runs["status"].value_counts()


def detail_table(points: pd.DataFrame, baseline_batch: int | None = None) -> pd.DataFrame:
    """Per workload, GPU, series and batch size: requests, throughput, latency percentiles, mean
    running batch, output tokens/request, repeats, and changes of tok/s, TTFT p50 and TPOT p50
    (%) against ``baseline_batch_size``; ``prefix_cache_hit_pct`` where some point has a hit rate."""
    df = points.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        df["success_pct"] = df[N_REQUESTS_OK] / df[N_REQUESTS_MEASURED] * 100.0
    df = with_baseline(df, baseline_batch, [OUTPUT_THROUGHPUT_TOK_S, TTFT_P50_MS, TPOT_P50_MS])
    keep = SERIES_KEYS + ["batch_size", "flags", "n_cells", "cell_id", "simulated", "baseline_batch_size"]
    keep += DETAIL_COLUMNS
    keep += [f"change_{m}_pct" for m in (OUTPUT_THROUGHPUT_TOK_S, TTFT_P50_MS, TPOT_P50_MS)]
    how = how_measured(df)
    if how.ne("").any():  # only where some point says how (a server measured over its API)
        df["how_measured"] = how
        keep.append("how_measured")
    if spans_gpus(df):  # only where some cell spans several GPUs: their count and tok/s per GPU
        keep += [TENSOR_PARALLEL_SIZE, OUTPUT_TOK_S_PER_GPU]
    return with_hit_pct(df[keep], df)


def spans_gpus(points: pd.DataFrame) -> bool:
    """Does some point run over several GPUs (tensor parallelism)?"""
    return TENSOR_PARALLEL_SIZE in points and bool((points[TENSOR_PARALLEL_SIZE] > 1).any())


def with_hit_pct(table: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus ``prefix_cache_hit_pct`` (the hit rate of ``points``, aligned with it, in %)
    where some point has a hit rate; ``table`` as it is otherwise."""
    if PREFIX_CACHE_HIT_RATE not in points or points[PREFIX_CACHE_HIT_RATE].isna().all():
        return table
    return table.assign(**{PREFIX_CACHE_HIT_PCT: points[PREFIX_CACHE_HIT_RATE] * 100.0})


def how_measured(points: pd.DataFrame) -> pd.Series:
    """Per point, how its numbers were measured where its rows say (``chat; prompts as text;
    tokens counted from tokenized; ITL per chunk``), '' where they do not."""
    parts = {"api": "{}", "prompt_mode": "prompts as {}", "token_count_source": "tokens counted from {}",
             "itl_basis": "ITL per {}"}
    cols = [c for c in HOW_MEASURED if c in points]
    return pd.Series(["; ".join(parts[c].format(r[c]) for c in cols if isinstance(r[c], str) and r[c])
                      for _, r in points[cols].iterrows()] if cols else [""] * len(points),
                     index=points.index, dtype=object)


def best_rows(points: pd.DataFrame, metric: str, largest: bool) -> pd.DataFrame:
    """Per series, the point with the best ``metric`` (ties: the smaller batch size)."""
    valid = points[points[metric].notna()].sort_values("batch_size", kind="stable")
    if valid.empty:
        return valid
    pick = valid.groupby(SERIES_KEYS, sort=False)[metric].transform("max" if largest else "min")
    return valid[valid[metric] == pick].drop_duplicates(SERIES_KEYS)


def summary_table(points: pd.DataFrame, baseline_batch: int | None = None) -> pd.DataFrame:
    """One row per series: the baseline point (``base_``, at ``base_batch_size``, see module
    doc) against the best point by output throughput (``tput_``) and by gross J/request
    (``energy_``). Columns ``<role>_batch_size``, ``<role>_flags``, ``<role>_simulated``,
    ``<role>_<metric>`` and ``<role>_change_<metric>_pct`` for the metrics of ``SUMMARY_METRICS``;
    the energy role is empty (NaN) where no energy (measured or modeled) exists."""
    roles = {
        "base": baseline_points(points, baseline_batch),
        "tput": best_rows(points, OUTPUT_THROUGHPUT_TOK_S, largest=True),
        "energy": best_rows(points[points["energy_available"]], ENERGY_PER_REQUEST_J, largest=False),
    }
    cols = ["batch_size", "flags", "simulated", "arrival", OFFERED_RATE_RPS, SATURATED] + SUMMARY_METRICS
    out = points[SERIES_KEYS].drop_duplicates().reset_index(drop=True)
    for role, frame in roles.items():
        part = frame[SERIES_KEYS + cols].rename(columns={c: f"{role}_{c}" for c in cols})
        out = out.merge(part, on=SERIES_KEYS, how="left")
    for role in ("tput", "energy"):
        for m in SUMMARY_METRICS:
            out[f"{role}_change_{m}_pct"] = pct_change(out[f"{role}_{m}"], out[f"base_{m}"])
    return out
