"""Which cells to measure next: rounds that measure where the predictions are least certain.

Each round takes ``n`` cells, in this order of preference:

1. a cell of an engine path with nothing measured yet (a new path: its prediction leans on other
   paths), at a corner of its series (its smallest or largest batch size);
2. then the widest prediction intervals, summed over the metrics predicted (relative half-widths);
3. once a cell is taken, other cells that share its engine start (``unit``) come next while their
   width is at least ``share_width`` of the taken cell's: an engine start is paid for once (once
   every engine path has a measured cell: a new path is worth more than a shared start).

Ties are broken by ``rng`` (a seeded ``numpy.random.Generator``), so a seed fixes the choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Dict, List, Mapping, Sequence, Set

import numpy as np

from orchestrator.active.predictor import GridCell, ResidualPredictor


@dataclass(frozen=True)
class Round:
    """The cells a round picked, each with its summed relative half-width when it was picked."""

    keys: List[str]
    widths: List[float]


def corners(cells: Sequence[GridCell]) -> Set[str]:
    """The smallest and largest batch size of every (path, workload) series."""
    by_series: Dict[tuple, List[GridCell]] = {}
    for c in cells:
        by_series.setdefault((c.path, c.workload), []).append(c)
    out: Set[str] = set()
    for series in by_series.values():
        out.add(min(series, key=lambda c: c.batch_size).key)
        out.add(max(series, key=lambda c: c.batch_size).key)
    return out


def next_round(cells: Sequence[GridCell], units: Mapping[str, str], predictors: Sequence[ResidualPredictor],
               n: int, rng: np.random.Generator, share_width: float = 0.5,
               skip: AbstractSet[str] = frozenset()) -> Round:
    """Up to ``n`` unmeasured cells to measure next (see module doc). ``predictors``: one per
    metric, fitted on the same measured cells; ``skip``: cells not to pick either (tried and
    failed)."""
    measured = set(predictors[0].measured)
    todo = [c for c in cells if c.key not in measured and c.key not in skip]
    if not todo or n <= 0:
        return Round([], [])
    paths_seen = {c.path for c in cells if c.key in measured}
    corner = corners(cells)
    width = {c.key: sum(p.predict(c.key).relative_half_width for p in predictors) for c in todo}
    jitter = {c.key: float(rng.random()) for c in todo}

    def rank(c: GridCell) -> tuple:
        return (c.path not in paths_seen and c.key in corner, width[c.key], jitter[c.key])

    order = sorted(todo, key=rank, reverse=True)
    picked: List[str] = []
    while order and len(picked) < n:
        first = order.pop(0)
        picked.append(first.key)
        paths_seen.add(first.path)
        if any(rank(c)[0] for c in order):
            order.sort(key=rank, reverse=True)
            continue  # a path with nothing measured goes before a second cell of this engine start
        mates = [c for c in order if units[c.key] == units[first.key] and width[c.key] >= share_width * width[first.key]]
        for c in mates[: n - len(picked)]:
            picked.append(c.key)
            order.remove(c)
        order.sort(key=rank, reverse=True)  # a new path seen: its other corners lose their priority
    return Round(picked, [width[k] for k in picked])
