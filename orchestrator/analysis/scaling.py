"""Scaling laws over batch size: ``y ≈ C x BS^k`` by least squares in log-log space.

For energy per request the seed's form is ``E ≈ C / BS^α``, i.e. ``k = -α``; for throughput
``k`` is the scaling exponent (1 = linear). ``C`` is in the unit of ``y`` (the fitted value at
BS = 1); R² is computed in log space. Where the law breaks down: the largest prefix of batch
sizes (at least ``min_points``, smallest first) whose every point lies within ``tolerance`` of
its own fit "holds"; the next batch size is where it breaks, with the measured deviation from
that fit's extrapolation (energy above the fit or throughput below it = diminishing returns).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.analysis.tables import SERIES_KEYS
from orchestrator.store.schema import ENERGY_PER_1K_OUTPUT_TOKENS_J, ENERGY_PER_REQUEST_J, OUTPUT_THROUGHPUT_TOK_S

FIT_METRICS = {
    ENERGY_PER_REQUEST_J: "J/request",
    ENERGY_PER_1K_OUTPUT_TOKENS_J: "J/1k output tokens",
    OUTPUT_THROUGHPUT_TOK_S: "output tok/s",
}
DEFAULT_TOLERANCE = 0.10
MIN_POINTS = 3


@dataclass(frozen=True)
class PowerLawFit:
    """``y = c x bs**exponent`` fitted on ``n_points`` batch sizes in [bs_min, bs_max]."""

    c: float
    exponent: float
    r2: float
    n_points: int
    bs_min: float
    bs_max: float

    @property
    def alpha(self) -> float:
        """The seed's α in ``y = C / BS^α`` (= -exponent)."""
        return -self.exponent

    def predict(self, bs) -> np.ndarray:
        b = np.asarray(bs, dtype=float)
        return np.reshape(power_law(self.c, self.exponent, b.ravel().tolist()), b.shape)


def power_law(c: float, exponent: float, bs) -> list[float]:
    """``c x b**exponent`` for each ``b``, in libm arithmetic (as ``fit_power_law``: numpy's
    vectorized power differs in the last bits from one CPU to another, and the deviations from a
    fit land in the committed tables)."""
    return [c * math.pow(float(b), exponent) for b in bs]


@dataclass(frozen=True)
class ScalingResult:
    """The fit over all points, the fit over the range where the law holds (None when no range
    of ``min_points`` does), the first batch size past that range and its deviation (%)."""

    full: PowerLawFit
    holds: PowerLawFit | None
    breaks_at_bs: float | None
    deviation_pct: float | None


def fit_power_law(bs, y) -> PowerLawFit:
    """Least squares of ``log y = log c + exponent x log bs``; needs >= 2 distinct positive bs
    and positive y (raises ValueError otherwise)."""
    b, w = np.asarray(bs, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if b.size < 2 or np.unique(b).size < 2 or not np.all(np.isfinite(b) & (b > 0) & np.isfinite(w) & (w > 0)):
        raise ValueError("a power-law fit needs >= 2 distinct positive batch sizes with positive values")
    # closed-form simple regression in correctly rounded sums (math.fsum) of libm logs: the same bits
    # on every CPU, where np.polyfit's LAPACK and numpy's SIMD log differ in the last digits from one
    # machine to the next (and the committed report must regenerate byte for byte)
    x, v = [math.log(t) for t in b.tolist()], [math.log(t) for t in w.tolist()]
    n = len(x)
    mx, mv = math.fsum(x) / n, math.fsum(v) / n
    sxx = math.fsum((a - mx) ** 2 for a in x)
    slope = math.fsum((a - mx) * (c - mv) for a, c in zip(x, v)) / sxx
    intercept = mv - slope * mx
    ss_res = math.fsum((c - (intercept + slope * a)) ** 2 for a, c in zip(x, v))
    ss_tot = math.fsum((c - mv) ** 2 for c in v)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(c=math.exp(intercept), exponent=slope, r2=r2, n_points=n,
                       bs_min=float(b.min()), bs_max=float(b.max()))


def fit_with_breakdown(bs, y, tolerance: float = DEFAULT_TOLERANCE, min_points: int = MIN_POINTS) -> ScalingResult:
    """Fit all points and find where the law stops holding (see module doc)."""
    bs, y = np.asarray(bs, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(bs)
    bs, y = bs[order], y[order]
    full = fit_power_law(bs, y)
    for k in range(bs.size, min_points - 1, -1):
        fit = fit_power_law(bs[:k], y[:k])
        if np.max(np.abs(y[:k] / fit.predict(bs[:k]) - 1.0)) <= tolerance:
            if k == bs.size:
                return ScalingResult(full, fit, None, None)
            deviation = float((y[k] / fit.predict(bs[k]) - 1.0) * 100.0)
            return ScalingResult(full, fit, float(bs[k]), deviation)
    return ScalingResult(full, None, None, None)


def _fit_points(points: pd.DataFrame, metric: str) -> pd.DataFrame:
    sel = points[points[metric].notna() & (points[metric] > 0) & (points["batch_size"] > 0)]
    if metric.startswith(("energy", "net_energy")):
        sel = sel[sel["energy_available"]]  # measured or modeled (``simulated`` marks the latter)
    return sel


def scaling_table(points: pd.DataFrame, metric: str, tolerance: float = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """One row per series with >= 2 batch sizes: the full fit (``c``, ``exponent``, ``alpha``,
    ``r2``, ``n_points``, ``bs_min``, ``bs_max``), the holding range (``holds_*``), and
    ``breaks_at_bs`` / ``deviation_pct``; ``simulated`` when any of its points is. ``c`` is in the
    metric's unit."""
    rows = []
    for key, grp in _fit_points(points, metric).groupby(SERIES_KEYS, sort=False):
        if grp["batch_size"].nunique() < 2:
            continue
        res = fit_with_breakdown(grp["batch_size"], grp[metric], tolerance)
        row = dict(zip(SERIES_KEYS, key), metric=metric, flags=" ".join(sorted(set(" ".join(grp["flags"]).split()))),
                   simulated=bool(grp["simulated"].any()))
        row.update(_fit_columns("", res.full))
        row.update(_fit_columns("holds_", res.holds))
        row.update(breaks_at_bs=res.breaks_at_bs, deviation_pct=res.deviation_pct)
        rows.append(row)
    return pd.DataFrame(rows)


def _fit_columns(prefix: str, fit: PowerLawFit | None) -> dict:
    names = ("c", "exponent", "alpha", "r2", "n_points", "bs_min", "bs_max")
    if fit is None:
        return {f"{prefix}{n}": None for n in names}
    values = (fit.c, fit.exponent, fit.alpha, fit.r2, fit.n_points, fit.bs_min, fit.bs_max)
    return {f"{prefix}{n}": v for n, v in zip(names, values)}


def local_exponents(points: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Slope of log(metric) over log(BS) between consecutive batch sizes of each series:
    where returns diminish (throughput slope falls below 1, energy slope rises towards 0)."""
    rows = []
    for key, grp in _fit_points(points, metric).groupby(SERIES_KEYS, sort=False):
        g = grp.sort_values("batch_size")
        b, v = np.log(g["batch_size"].to_numpy(float)), np.log(g[metric].to_numpy(float))
        for i in range(1, b.size):
            rows.append(dict(zip(SERIES_KEYS, key), metric=metric, bs_from=g["batch_size"].iloc[i - 1],
                             bs_to=g["batch_size"].iloc[i], exponent=(v[i] - v[i - 1]) / (b[i] - b[i - 1])))
    return pd.DataFrame(rows)
