"""What the search loop (``driver.SearchLoop``) and the pick (``pick``) need of a search kind,
as Protocols: a ``Goal`` (what the kind minimises, how it judges a trial and how its value is
reported) and a ``Study`` (the sampler the loop asks for candidates and tells their results).

Implementations: ``energy_slo.EnergyGoal`` and ``capacity.CapacityGoal`` (goals);
``study.OptunaStudy`` (TPE, the trial handle an Optuna trial) and ``bracket.Bracket`` (the
capacity bracket, the handle an index into the rate axis) (studies). Which kind uses which is
``kinds.SEARCH_KINDS``. Both Protocols are ``runtime_checkable`` (``isinstance`` checks the
members exist; mypy checks their types where an implementation is assigned to the Protocol).
"""
from __future__ import annotations

from typing import Optional, Protocol, Tuple, TypeVar, runtime_checkable

from orchestrator.config.search import Objective
from orchestrator.search.outcome import Outcome, Verdict
from orchestrator.search.space import Candidate

TrialT = TypeVar("TrialT")
"""The handle a study gives with a candidate and takes back when told its result."""


@runtime_checkable
class Goal(Protocol):
    """What a search kind minimises and how it judges a trial.

    Invariants: ``value`` is finite for every outcome (a trial without a valid measurement gets a
    penalty, never NaN), lower is better; ``shown(value)`` is that value in the units of
    ``value_name`` as ``search.json`` and the answer line report it; ``judge`` is the trial's
    SLO verdict (a missing outcome is a failure)."""

    @property
    def objective(self) -> Objective:
        """Which energy (gross or net) the trial records and the pick's J/request use."""
        ...

    @property
    def value_name(self) -> str:
        """The unit of ``shown`` values, e.g. ``J/output token`` or ``offered req/s``."""
        ...

    def judge(self, outcome: Optional[Outcome]) -> Verdict:
        """The trial against the SLOs: feasible, or why not and by how much."""
        ...

    def value(self, candidate: Candidate, outcome: Optional[Outcome]) -> float:
        """The quantity told to the study (to minimise)."""
        ...

    def shown(self, value: float) -> float:
        """``value`` as reported (in ``value_name``)."""
        ...


@runtime_checkable
class Study(Protocol[TrialT]):
    """A sampler over a ``Space``: ``ask`` proposes a candidate (with a handle), ``tell`` gives
    that handle's value (to minimise) and verdict back. ``closed``: the study knows it has nothing
    new to ask (the loop stops before asking); a study that never knows stays False, and the loop
    stops on repeated asks or the budget."""

    @property
    def closed(self) -> bool:
        ...

    def ask(self) -> Tuple[TrialT, Candidate]:
        ...

    def tell(self, trial: TrialT, value: float, verdict: Verdict) -> None:
        ...
