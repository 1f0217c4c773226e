"""Repeatability: the mean, Student-t 95% confidence interval and coefficient of variation of a
point's repeats.

A sweep with ``repeats=N`` runs every configuration N times (``repeat`` 0..N-1, each its own
cell); ``batch_points`` folds them into one point per series x workload x batch size. For each
metric ``m`` of ``REPEAT_METRICS``, over the n ok repeats of the point where ``m`` has a value
(s = their sample standard deviation, ddof 1):

- ``m`` (``batch_points``) / ``m_mean`` (``repeatability_table``): the mean, in m's unit;
- ``m_ci95_half_width`` = t(0.975, n − 1) × s / √n, in m's unit (the Student-t quantile of
  ``scipy.stats.t.ppf``, computed by the function behind it, ``scipy.special.stdtrit``, which
  imports in a third of the time);
- ``m_ci95_low`` / ``m_ci95_high`` = mean − / + half-width, in m's unit;
- ``m_cv`` = s / mean: the coefficient of variation, a fraction (× 100 for %).

With n = 1 (or a zero mean, for the CV) these are NaN — no interval — never 0. ``n_repeats``: the
number of distinct ok repeats the point holds. Energy is per output token (J), gross and net,
measured or modeled (simulated rows are marked ``simulated``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.store.schema import OUTPUT_THROUGHPUT_TOK_S, TPOT_P50_MS, TTFT_P50_MS

REPEAT_METRICS = {
    OUTPUT_THROUGHPUT_TOK_S: "output tok/s",
    "energy_per_output_token_j": "J/output token gross",
    "net_energy_per_output_token_j": "J/output token net",
    TTFT_P50_MS: "TTFT p50 (ms)",
    TPOT_P50_MS: "TPOT p50 (ms)",
}
"""Metric column -> its name in the report."""

CONFIDENCE = 0.95
STATS = ("ci95_low", "ci95_high", "ci95_half_width", "cv")
"""Suffixes of the columns each repeat metric gets (``<metric>_<suffix>``)."""


def t_quantile(n) -> np.ndarray:
    """Two-sided Student-t quantile t(0.975, n − 1) for ``n`` values each; NaN where n < 2."""
    from scipy.special import stdtrit  # = scipy.stats.t.ppf(p, df)

    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(n >= 2, stdtrit(np.maximum(n - 1.0, 1.0), 0.5 + CONFIDENCE / 2.0), np.nan)


def interval(mean, std, n) -> dict[str, np.ndarray]:
    """``STATS`` columns from means, sample standard deviations (ddof 1) and counts (arrays)."""
    mean, std, n = (np.asarray(v, dtype=float) for v in (mean, std, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        half = t_quantile(n) * std / np.sqrt(n)
        cv = np.where((n >= 2) & (mean != 0), std / np.abs(mean), np.nan)
    return {"ci95_low": mean - half, "ci95_high": mean + half, "ci95_half_width": half, "cv": cv}


def repeat_stats(cells: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of ``keys`` (the index): ``n_repeats`` and ``<metric>_<stat>`` for every
    ``REPEAT_METRICS`` metric and ``STATS`` suffix (see module doc)."""
    groups = cells.groupby(keys, sort=False, dropna=False)
    out = {"n_repeats": groups["repeat"].nunique()}
    for m in REPEAT_METRICS:
        values = groups[m]
        mean, std, n = values.mean(), values.std(ddof=1), values.count()
        for stat, column in interval(mean, std, n).items():
            out[f"{m}_{stat}"] = pd.Series(column, index=mean.index)
    return pd.DataFrame(out)


def repeatability_table(points: pd.DataFrame) -> pd.DataFrame:
    """One row per point: keys, batch size, flags, ``simulated``, ``n_repeats`` and, per repeat
    metric, ``<metric>_mean`` and the ``STATS`` columns (units as the metric's; CV a fraction)."""
    keys = ["workload", "gpu", "model", "quantization", "variant", "series"]
    keep = keys + ["batch_size", "flags", "cell_id", "simulated", "energy_measured", "n_repeats"]
    for m in REPEAT_METRICS:
        keep += [m] + [f"{m}_{s}" for s in STATS]
    return points[keep].rename(columns={m: f"{m}_mean" for m in REPEAT_METRICS}).reset_index(drop=True)


def any_repeated(points: pd.DataFrame) -> bool:
    """Does any point hold two or more repeats?"""
    return bool((points["n_repeats"] >= 2).any()) if "n_repeats" in points else False
