"""The capacity search's sampler when the offered rate is its only axis: bracketing, not TPE.

A configuration's ability to meet its SLOs unsaturated falls as the offered rate rises, so the
capacity on a sorted list of rates is the last passing rate before the first failing one. The
bracket is (highest passing index below the lowest failing one, lowest failing index); each round
asks up to ``parallel`` rates spread evenly inside it (one rate: bisection). It closes in about
log2(n) / log2(parallel + 1) rounds, where TPE may never try the rates just under the first
failure (seen: 24 req/s passing, 48 failing, 32 and 40 never asked). A closed bracket asks its
passing end again; ``closed`` tells the search loop so before it asks. Results that are
not monotone (noise near the capacity) keep the highest pass *below* the lowest failure.

A ``contracts.Study`` like ``study.OptunaStudy`` (``ask`` / ``tell`` / ``closed``); the trial
handle is the rate's index.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from orchestrator.search.outcome import Verdict
from orchestrator.search.space import Candidate, Space


class Bracket:
    """Bisection (k-section with ``parallel`` asks per round) over one ordered axis."""

    def __init__(self, space: Space, parallel: int = 1) -> None:
        [self.axis] = space.axes
        self.space = space
        self.parallel = max(1, parallel)
        self.passed: Dict[int, bool] = {}
        self.pending: List[int] = []

    def bounds(self) -> tuple[int, int]:
        """(highest passing index below the lowest failure or -1, lowest failing index or n)."""
        fail = min((i for i, ok in self.passed.items() if not ok), default=len(self.axis.values))
        low = max((i for i, ok in self.passed.items() if ok and i < fail), default=-1)
        return low, fail

    @property
    def closed(self) -> bool:
        """Every rate inside the bracket is measured or asked already: nothing new to ask now."""
        low, high = self.bounds()
        return all(i in self.passed or i in self.pending for i in range(low + 1, high))

    def _next(self) -> int:
        low, high = self.bounds()
        inside = [i for i in range(low + 1, high) if i not in self.passed and i not in self.pending]
        if not inside:
            return max(low, 0)  # closed: a known index (the loop stops on repeated asks)
        k = min(self.parallel, len(inside))
        # k points spread evenly over the open bracket, nearest free index to each target
        step = (high - low) / (k + 1)
        target = low + step * (len(self.pending) % k + 1)
        return min(inside, key=lambda i: abs(i - target))

    def ask(self) -> Tuple[int, Candidate]:
        index = self._next()
        if index not in self.passed:
            self.pending.append(index)
        return index, self.space.candidate({self.axis.key: self.axis.values[index]})

    def tell(self, trial: int, value: float, verdict: Verdict) -> None:
        self.passed[trial] = verdict.feasible
        if trial in self.pending:
            self.pending.remove(trial)
