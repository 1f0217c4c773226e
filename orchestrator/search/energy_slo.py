"""``search.kind=energy_slo``: minimise J per output token (gross or net: ``search.objective``)
among the cells that meet both p99 SLOs and are not saturated.

The value told to the sampler is the cell's J per output token; a cell without a valid energy
(failed, unsupported, infeasible) is told ``PENALTY_J`` with a failure violation, so the
constrained sampler ranks it below every feasible trial whatever its value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.config.search import Objective, SloConfig
from orchestrator.search.outcome import Outcome, Verdict, verdict
from orchestrator.search.space import Candidate

PENALTY_J = 1.0e3
"""J per output token told for a cell with no valid energy (real cells: about 0.1-10)."""


@dataclass(frozen=True)
class EnergyGoal:
    """Least J per output token under the SLOs."""

    objective: Objective
    slo: SloConfig
    value_name: str = "J/output token"

    def judge(self, outcome: Outcome) -> Verdict:
        return verdict(outcome, self.slo, self.objective)

    def value(self, candidate: Candidate, outcome: Outcome) -> float:
        """The quantity to minimise (J per output token)."""
        j = outcome.energy_per_token_j(self.objective) if outcome is not None else float("nan")
        return j if math.isfinite(j) else PENALTY_J

    def shown(self, value: float) -> float:
        """The value as reported (J per output token)."""
        return value

    def study(self, space, search, parallel: int):
        """The Optuna study (TPE with the SLO constraints)."""
        from orchestrator.search.study import Study

        return Study(space, search, search.startup_trials)
