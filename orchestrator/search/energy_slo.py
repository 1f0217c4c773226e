"""``search.kind=energy_slo``: minimise J per output token (gross or net: ``search.objective``)
among the cells that meet both p99 SLOs and are not saturated.

The value told to the sampler is the cell's J per output token; a cell without a valid energy
(failed, unsupported, infeasible) is told ``PENALTY_J`` with a failure violation, so the
constrained sampler ranks it below every feasible trial whatever its value. The sampler is the
Optuna study (TPE with the SLO constraints, ``study.OptunaStudy``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from orchestrator.config.search import SearchConfig
from orchestrator.search.contracts import Goal, Study
from orchestrator.search.outcome import Outcome, SloJudge
from orchestrator.search.space import Candidate, Space
from orchestrator.search.study import OptunaStudy

PENALTY_J = 1.0e3
"""J per output token told for a cell with no valid energy (real cells: about 0.1-10)."""


@dataclass(frozen=True)
class EnergyGoal(SloJudge):
    """Least J per output token under the SLOs (``judge``: ``SloJudge``'s, on ``objective``)."""

    value_name: str = "J/output token"

    def value(self, candidate: Candidate, outcome: Optional[Outcome]) -> float:
        """The quantity to minimise (J per output token; ``PENALTY_J`` without a valid one)."""
        j = outcome.energy_per_token_j(self.objective) if outcome is not None else float("nan")
        return j if math.isfinite(j) else PENALTY_J

    def shown(self, value: float) -> float:
        """The value as reported (J per output token)."""
        return value


def energy_goal(search: SearchConfig) -> Goal:
    """The goal of an energy search (its SLOs and objective)."""
    return EnergyGoal(slo=search.slo, objective=search.objective)


def energy_study(space: Space, search: SearchConfig, parallel: int) -> Study[Any]:
    """The Optuna study (TPE with the SLO constraints); ``parallel`` is the loop's concern."""
    study: Study[Any] = OptunaStudy(space, search, search.startup_trials)
    return study
