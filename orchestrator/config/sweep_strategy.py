"""``sweep.*``: how a sweep spends its GPU time — every cell (``grid``, the default), a budget
of them chosen round by round, the rest predicted with intervals (``active``; issue 31,
``search.active_sweep``), or a random few of an active sweep's predicted cells measured to check
its predictions (``check``, ``search.active_check``). A bad value is one ``ConfigError`` line (exit 2) before any cell."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from orchestrator.config.fields import check


class Strategy(str, Enum):
    """Which cells of the grid a sweep measures."""

    grid = "grid"  # every cell
    active = "active"  # ``budget`` of them, the most informative first; the rest predicted
    check = "check"  # ``check_cells`` of an active sweep's predicted cells, to check its predictions


@dataclass
class SweepStrategyConfig:
    """``budget``: the fraction of the grid's launchable cells an active sweep measures (cells
    already measured in the store count). ``round_cells``: cells chosen per round (None: 5% of
    the launchable cells, at least 2). ``target_half_width``: stop early once every predicted
    cell's 90% interval is within this fraction of its value, for tok/s and J per output token
    (None: spend the budget). ``seed``: breaks ties between equally informative cells, and draws
    a check's cells. ``check_cells``: how many predicted cells ``strategy=check`` measures."""

    strategy: Strategy = Strategy.grid
    budget: float = 0.25
    round_cells: Optional[int] = None
    target_half_width: Optional[float] = None
    seed: int = 0
    check_cells: int = 10

    def validate(self) -> None:
        check("sweep.budget", self.budget, 0 < self.budget <= 1, "must be in (0, 1]: a fraction of the launchable cells")
        check("sweep.round_cells", self.round_cells, self.round_cells is None or self.round_cells >= 1, "must be >= 1")
        check("sweep.target_half_width", self.target_half_width,
              self.target_half_width is None or 0 < self.target_half_width < 1, "must be in (0, 1)")
        check("sweep.check_cells", self.check_cells, self.check_cells >= 1, "must be >= 1")

    @property
    def active(self) -> bool:
        return self.strategy is Strategy.active

    @property
    def check(self) -> bool:
        return self.strategy is Strategy.check
