"""``search.*``: the schema of a search (``+search=energy_slo`` / ``+search=capacity``) and its
value checks, run before any cell: a bad value is one ``ConfigError`` line (exit 2).

The search space is not here: it is the sweep's axes (``hydra.sweeper.params`` of the search
file, replaced axis by axis from the command line), so a search explores exactly the cells the
same grid would run, with the same ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from orchestrator.config.fields import check


class SearchKind(str, Enum):
    """What a search looks for."""

    energy_slo = "energy_slo"  # least J per output token among cells meeting the SLOs, unsaturated
    capacity = "capacity"  # highest offered rate meeting the SLOs, unsaturated


class Objective(str, Enum):
    """Which energy an energy search minimises per output token."""

    gross = "gross"  # energy_j: everything the GPU drew in the window
    net = "net"  # net_energy_j: minus the idle baseline


class Method(str, Enum):
    """How candidates are chosen."""

    optuna = "optuna"  # Optuna TPE with constraints (see orchestrator.search.study)
    grid = "grid"  # every candidate: the brute-force reference, same cells and record


@dataclass
class SloConfig:
    """Latency service-level objectives, both on the 99th percentile of the measured window."""

    ttft_p99_ms: Optional[float] = None
    tpot_p99_ms: Optional[float] = None

    def validate(self) -> None:
        for key in ("ttft_p99_ms", "tpot_p99_ms"):
            value = getattr(self, key)
            check(f"search.slo.{key}", value, value is not None, "required: the p99 target in ms (> 0)")
            check(f"search.slo.{key}", value, isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
                  "must be a number of ms > 0")


@dataclass
class SearchConfig:
    """One search. ``max_cells``: how many cells it may launch (trials plus confirmation
    repeats); None: ``budget_fraction`` of the grid's launchable cells (at least ``parallel``
    or 2). ``parallel``: trials per round; None: as many as the Ray cluster has GPUs of the type
    (CPUs for engines that need none). ``confirm_repeats``: extra repeats (own ids and seeds)
    measured of the pick and of feasible trials within ``tie_rel`` of it (at most
    ``confirm_top`` candidates), so noise neither picks nor admits a point by luck.
    ``headroom_rates_rps``: after an energy search, a capacity search of the pick over these
    offered rates (its headroom and J/request there)."""

    kind: SearchKind = SearchKind.energy_slo
    objective: Objective = Objective.gross
    method: Method = Method.optuna
    slo: SloConfig = field(default_factory=SloConfig)
    max_cells: Optional[int] = None
    budget_fraction: float = 0.25
    parallel: Optional[int] = None
    startup_trials: int = 4
    confirm_repeats: int = 1
    confirm_top: int = 2
    tie_rel: float = 0.03
    max_duplicate_asks: int = 64
    seed: int = 0
    headroom_rates_rps: List[float] = field(default_factory=list)

    def validate(self) -> None:
        self.slo.validate()
        check("search.max_cells", self.max_cells, self.max_cells is None or self.max_cells >= 1, "must be >= 1")
        check("search.budget_fraction", self.budget_fraction, 0 < self.budget_fraction <= 1, "must be in (0, 1]")
        check("search.parallel", self.parallel, self.parallel is None or self.parallel >= 1, "must be >= 1")
        check("search.startup_trials", self.startup_trials, self.startup_trials >= 1, "must be >= 1")
        check("search.confirm_repeats", self.confirm_repeats, self.confirm_repeats >= 0, "must be >= 0")
        check("search.confirm_top", self.confirm_top, self.confirm_top >= 1, "must be >= 1")
        check("search.tie_rel", self.tie_rel, 0 <= self.tie_rel < 1, "must be in [0, 1)")
        check("search.max_duplicate_asks", self.max_duplicate_asks, self.max_duplicate_asks >= 1, "must be >= 1")
        for rate in self.headroom_rates_rps:
            check("search.headroom_rates_rps", rate, rate > 0, "every rate must be > 0")
