"""Predictions of a metric for every cell of a grid, with intervals, from the simulator's values
corrected by the measured cells' errors.

A cell's correction is its simulator error on the log scale, r = log(measured / simulated),
estimated from the measured cells nearest to it, at the first of these levels that has any:

1. ``series``: the same engine path (model, quantization, GPU and engine variant, e.g. eager)
   and workload, measured at batch sizes on both sides of the cell's (or at it) — r interpolated
   linearly in log2(batch size) between the nearest measured batch sizes below and above;
2. ``extrapolated``: the same series measured on one side only — the nearest measured batch
   size's r (errors grow with the distance: a level of its own, whose errors are scaled by the
   square root of the log2 batch-size distance reached, at least one doubling, in the
   calibration and in the interval alike — a normalised conformal interval: four doublings away
   is twice as wide as one);
3. ``path``: the same engine path, any workload — the mean r of its measured cells;
4. ``variant``: the same engine variant (e.g. ``enforce_eager=true``) on other models or
   quantizations — their mean r (a variant the simulator does not model misses alike);
5. ``quantization``: the same quantization elsewhere — their mean r;
6. ``grid``: any measured cell — their mean r (none measured: r = 0, the simulator alone).

At the last two a default cell borrows from default cells only and a variant's cell from variants'
only, where there are any (eager misses by a factor of four what CUDA graphs hit within 5%).

The interval at each level is conformal: every measured cell is predicted from the others as
each level would predict it (for the ``path`` level, say, its own series left out), and its
|error| counts at the level that prediction reaches; the half-width of a 90% interval (log scale) at a level
is the ⌈(n+1)·0.9⌉-th smallest of the n |errors| at that level, pooled with the next coarser
levels' until there are enough for that quantile (9 at 90%; a coarser level misses more:
pooling is conservative) — per class: default engines apart from variants (eager, an int8
threshold), whose misses are of another size, both classes pooled where one has too few —
``prior_half_width`` where even all coarser ones are too few, and never narrower than a finer
level's; and never narrower than the same computed from the cell's own GPU's errors alone (the
largest of them while they are too few for a quantile): cells of a GPU measured on other machines
or days than the rest differ by more than one machine's cells do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np


class Level(IntEnum):
    """How near the measured cells a prediction's correction came from (1 is nearest)."""

    series = 1
    extrapolated = 2
    path = 3
    variant = 4
    quantization = 5
    grid = 6


@dataclass(frozen=True)
class GridCell:
    """One cell of the grid as the predictor sees it; ``simulated``: the simulator's value of the
    metric (its unit: the metric's)."""

    key: str
    base: str  # [engine:]model/quantization/GPU
    variant: str  # the engine variant ('' for the default), e.g. 'enforce_eager=true'
    workload: str
    batch_size: int
    quantization: str
    simulated: float

    @property
    def path(self) -> str:
        """The engine path: base and variant."""
        return f"{self.base} [{self.variant}]" if self.variant else self.base

    @property
    def gpu(self) -> str:
        """The GPU: the last part of ``base``."""
        return self.base.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Prediction:
    """A predicted value with its interval (the metric's unit) and where its correction came from."""

    value: float
    low: float
    high: float
    level: Level

    @property
    def relative_half_width(self) -> float:
        """Half the interval's width over the value (a fraction; inf where the value is not a
        positive number: a cell the simulator could not predict is the least certain)."""
        ok = math.isfinite(self.value) and self.value > 0 and math.isfinite(self.high - self.low)
        return (self.high - self.low) / 2 / self.value if ok else math.inf


class ResidualPredictor:
    """Predicts one metric over ``cells`` from ``measured`` (cell key -> measured value); see the
    module doc. ``coverage``: the intervals' nominal coverage (0.9)."""

    def __init__(self, cells: Sequence[GridCell], measured: Mapping[str, float], coverage: float = 0.9,
                 prior_half_width: float = math.log(1.5)):
        self.cells = {c.key: c for c in cells}
        self.measured = {k: float(v) for k, v in measured.items() if k in self.cells and v > 0}
        self.coverage = coverage
        self.min_errors = math.ceil(coverage / (1 - coverage) - 1e-9)  # the fewest errors with a finite quantile
        self.prior_half_width = prior_half_width
        self._residual = {k: math.log(v / self.cells[k].simulated) for k, v in self.measured.items()
                          if self.cells[k].simulated > 0}
        self._gpu_errors: Dict[Tuple[str, bool, Level], List[float]] = {}
        self._half_width = self._conformal_widths()
        self._predictions: Dict[str, Prediction] = {}

    def _scale(self, cell: GridCell, res: Mapping[str, float], level: Level) -> float:
        """How far an extrapolation reaches, as the factor its error is scaled by: the square root
        of the log2 batch-size distance to the nearest measured cell of the series (1 at one
        doubling; 1 at every other level)."""
        if level != Level.extrapolated:
            return 1.0
        d = min(abs(math.log2(cell.batch_size) - math.log2(self.cells[k].batch_size)) for k in res
                if self.level_of(cell, k) == Level.series)
        return math.sqrt(max(d, 1.0))

    def _correction_from(self, cell: GridCell, res: Mapping[str, float]) -> tuple[float, Level]:
        same = [(self.cells[k].batch_size, r) for k, r in res.items() if self.level_of(cell, k) == Level.series]
        if same:
            inside = min(b for b, _ in same) <= cell.batch_size <= max(b for b, _ in same)
            return _interpolate(same, cell.batch_size), Level.series if inside else Level.extrapolated
        for level in (Level.path, Level.variant, Level.quantization):
            near = [r for k, r in res.items() if self.level_of(cell, k) == level]
            if near:
                return float(np.mean(near)), level
        alike = [r for k, r in res.items() if bool(self.cells[k].variant) == bool(cell.variant)]
        return (float(np.mean(alike or list(res.values()))) if res else 0.0), Level.grid

    def level_of(self, cell: GridCell, key: str) -> Level:
        """The finest level at which the measured cell ``key`` speaks for ``cell``."""
        other = self.cells[key]
        if other.path == cell.path:
            return Level.series if other.workload == cell.workload else Level.path
        if cell.variant and other.variant == cell.variant:
            return Level.variant
        if bool(other.variant) == bool(cell.variant) and other.quantization == cell.quantization:
            return Level.quantization
        return Level.grid

    def _conformal_widths(self) -> Dict[Tuple[bool, Level], float]:
        """Each measured cell predicted from the others as each level would (the cells that would
        speak for it at a finer level left out too): its error counts at the level reached."""
        errors: Dict[Tuple[bool, Level], List[float]] = {(v, lv): [] for v in (False, True) for lv in Level}
        for k, r in self._residual.items():
            cell = self.cells[k]
            seen = set()
            for lv in Level:
                subset = {j: q for j, q in self._residual.items() if j != k and self.level_of(cell, j) >= lv}
                if subset:
                    guess, reached = self._correction_from(cell, subset)
                    if reached not in seen:
                        seen.add(reached)
                        e = abs(r - guess) / self._scale(cell, subset, reached)
                        errors[bool(cell.variant), reached].append(e)
                        self._gpu_errors.setdefault((cell.gpu, bool(cell.variant), reached), []).append(e)
        widths: Dict[Tuple[bool, Level], float] = {}
        for variant in (False, True):
            finer = 0.0
            for lv in Level:
                pooled = self._pool(errors, lv, (variant,)) or self._pool(errors, lv, (False, True))
                widths[variant, lv] = finer = max(finer, self._quantile(sorted(pooled)))
        return widths

    def _pool(self, errors: Mapping[Tuple[bool, Level], List[float]], level: Level,
              classes: Tuple[bool, ...]) -> List[float]:
        """The errors of ``classes`` at ``level``, with coarser levels' until there are enough
        ([] where even all of them are too few)."""
        pooled: List[float] = []
        for coarser in (c for c in Level if c >= level):
            pooled += [e for v in classes for e in errors[v, coarser]]
            if len(pooled) >= self.min_errors:
                return pooled
        return []

    def _gpu_width(self, gpu: str, variant: bool, level: Level) -> float:
        """The width from ``gpu``'s own cross-validated errors of this class at ``level`` (pooled
        with coarser levels' until there are enough): their quantile, or their largest while too
        few for one (0 without any). A GPU whose cells were measured on other machines or days
        than the rest is not held to the others' tighter errors."""
        own: List[float] = []
        for lv in (c for c in Level if c >= level):
            own += self._gpu_errors.get((gpu, variant, lv), [])
            if len(own) >= self.min_errors:
                return self._quantile(sorted(own))
        return max(own, default=0.0)

    def _quantile(self, errors: List[float]) -> float:
        n = len(errors)
        if n < self.min_errors:
            return self.prior_half_width
        rank = math.ceil((n + 1) * self.coverage)
        return errors[rank - 1] if rank <= n else max(errors[-1], self.prior_half_width)

    def predict(self, key: str) -> Prediction:
        """The prediction of one cell (a measured cell too: as if it were not); computed once per
        cell (the measured cells are fixed at construction)."""
        hit = self._predictions.get(key)
        if hit is not None:
            return hit
        cell = self.cells[key]
        others = {k: q for k, q in self._residual.items() if k != key}
        r, level = self._correction_from(cell, others)
        value = cell.simulated * math.exp(r)
        w = max(self._half_width[bool(cell.variant), level], self._gpu_width(cell.gpu, bool(cell.variant), level))
        w *= self._scale(cell, others, level)
        hit = self._predictions[key] = Prediction(value=value, low=value * math.exp(-w), high=value * math.exp(w),
                                                  level=level)
        return hit

    def predict_all(self) -> Dict[str, Prediction]:
        """Every cell not measured."""
        return {k: self.predict(k) for k in self.cells if k not in self.measured}


def _interpolate(points: List[tuple[int, float]], batch_size: int) -> float:
    """r at ``batch_size`` from (batch size, r) points: linear in log2(batch size), the mean of
    points at the same batch size, the nearest end's beyond the range."""
    by_bs: Dict[int, List[float]] = {}
    for bs, r in points:
        by_bs.setdefault(bs, []).append(r)
    xs = sorted(by_bs)
    ys = [float(np.mean(by_bs[b])) for b in xs]
    return float(np.interp(math.log2(batch_size), [math.log2(b) for b in xs], ys))
