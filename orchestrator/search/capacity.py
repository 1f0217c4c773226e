"""``search.kind=capacity``: the highest offered rate (``workload.rate_rps``, an axis of the
space) that a configuration serves within both p99 SLOs, unsaturated, and its J per request
there. ``search.headroom_rates_rps`` runs one after an energy search, on its pick: at your
traffic the pick costs least energy; this says how much more traffic it takes before the SLOs
break, and what a request costs there.

The value told to the sampler is minus the offered rate (it minimises). With the rate as the only
axis the sampler is a bracket (``bracket.py``: the capacity is where passing turns to failing on
the sorted rates), not TPE.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, List, Optional, Sequence

from orchestrator.config.search import SearchConfig, SearchKind
from orchestrator.driver.overrides import override_key
from orchestrator.errors import ConfigError
from orchestrator.search.bracket import Bracket
from orchestrator.search.contracts import Goal, Study
from orchestrator.search.outcome import Outcome, SloJudge
from orchestrator.search.space import Axis, Candidate, Space
from orchestrator.search.study import OptunaStudy

RATE_KEY = "workload.rate_rps"


@dataclass(frozen=True)
class CapacityGoal(SloJudge):
    """Highest offered rate under the SLOs (``judge``: ``SloJudge``'s; ``objective``: which
    J/request is reported)."""

    value_name: str = "offered req/s"

    def value(self, candidate: Candidate, outcome: Optional[Outcome]) -> float:
        """Minus the candidate's offered rate in req/s (the study minimises)."""
        return -float(candidate.config.workload.rate_rps)

    def shown(self, value: float) -> float:
        """The value as reported (req/s offered)."""
        return -value


def capacity_goal(search: SearchConfig) -> Goal:
    """The goal of a capacity search (its SLOs; the objective only chooses the J/request shown)."""
    return CapacityGoal(slo=search.slo, objective=search.objective)


def capacity_study(space: Space, search: SearchConfig, parallel: int) -> Study[Any]:
    """Bracketing when the rate is the only axis (``bracket``, ``parallel`` asks a round), else
    the Optuna study."""
    if len(space.axes) == 1 and space.axes[0].ordered:
        bracket: Study[int] = Bracket(space, parallel)
        return bracket
    study: Study[Any] = OptunaStudy(space, search, search.startup_trials)
    return study


def check_rate_axis(axes: Sequence[Axis]) -> None:
    """A capacity search needs ``workload.rate_rps`` as an axis of its space."""
    if not any(a.key == RATE_KEY for a in axes):
        raise ConfigError(f"search.kind=capacity: the space needs a {RATE_KEY} axis with several rates "
                          f"(e.g. {RATE_KEY}=5,10,20,40)")


def headroom_jobs(job: Sequence[str], rates_rps: Sequence[float]) -> List[List[str]]:
    """The capacity jobs of one picked job: the job at each rate (its own rate dropped)."""
    kept = [o for o in job if override_key(o) != RATE_KEY]
    return [[*kept, f"{RATE_KEY}={float(r)!r}"] for r in sorted(set(rates_rps))]


def headroom_search(search: SearchConfig) -> SearchConfig:
    """The capacity search that follows an energy search (same SLOs, seed and confirmation)."""
    return replace(search, kind=SearchKind.capacity, headroom_rates_rps=[], max_cells=None, budget_fraction=1.0)
