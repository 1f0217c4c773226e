"""The search's contracts: every ``SearchKind`` has a spec in the read-only ``SEARCH_KINDS``; each
kind's goal and study conform to ``contracts.Goal`` / ``contracts.Study``; both goals share one
SLO judgement; the space check and the headroom search are per kind."""
from __future__ import annotations

import dataclasses

import pytest

from orchestrator.config.root import Config
from orchestrator.config.search import Objective, SearchConfig, SearchKind, SloConfig
from orchestrator.driver.grid import default_choices, expand
from orchestrator.errors import ConfigError
from orchestrator.search.bracket import Bracket
from orchestrator.search.capacity import CapacityGoal
from orchestrator.search.contracts import Goal, Study
from orchestrator.search.energy_slo import PENALTY_J, EnergyGoal
from orchestrator.search.kinds import SEARCH_KINDS
from orchestrator.search.outcome import Reason, SloJudge, verdict
from orchestrator.search.space import Space, jobs_of, space_of
from orchestrator.search.study import OptunaStudy
from tests.unit.search.test_search_space import _outcome

SLO = SloConfig(ttft_p99_ms=200.0, tpot_p99_ms=20.0)


def _space(params) -> Space:
    jobs = jobs_of(params, ["engine=simulated", "gpu=h100"])
    return space_of(jobs, expand(Config(), default_choices(), jobs))


def test_every_search_kind_has_a_read_only_spec():
    assert set(SEARCH_KINDS) == set(SearchKind)
    assert all(spec.kind is kind for kind, spec in SEARCH_KINDS.items())
    with pytest.raises(TypeError):
        SEARCH_KINDS[SearchKind.capacity] = SEARCH_KINDS[SearchKind.energy_slo]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SEARCH_KINDS[SearchKind.capacity].headroom = True  # type: ignore[misc]


@pytest.mark.parametrize("kind", list(SearchKind))
def test_each_kinds_goal_is_a_goal(kind):
    search = SearchConfig(kind=kind, slo=SLO, objective=Objective.net)
    goal = SEARCH_KINDS[kind].goal(search)
    assert isinstance(goal, Goal) and isinstance(goal, SloJudge)
    assert goal.slo is SLO and goal.objective is Objective.net


@pytest.mark.parametrize("kind,params,study_type", [
    (SearchKind.energy_slo, {"batch_size": "1,8", "quantization": "none,fp8"}, OptunaStudy),
    (SearchKind.capacity, {"workload.rate_rps": "5,10,20"}, Bracket),  # the rate alone: bracketing
    (SearchKind.capacity, {"workload.rate_rps": "5,10,20", "batch_size": "8,64"}, OptunaStudy),
])
def test_each_kinds_study_is_a_study(kind, params, study_type):
    search = SearchConfig(kind=kind, slo=SLO)
    space = _space(params)
    study = SEARCH_KINDS[kind].study(space, search, 2)
    assert type(study) is study_type and isinstance(study, Study)
    assert not study.closed
    trial, cand = study.ask()
    assert cand in space.candidates
    study.tell(trial, 1.0, verdict(_outcome(), SLO))


def test_the_goals_share_one_judgement():
    assert EnergyGoal.judge is CapacityGoal.judge is SloJudge.judge
    energy, capacity = EnergyGoal(slo=SLO, objective=Objective.net), CapacityGoal(slo=SLO, objective=Objective.net)
    for outcome in (_outcome(), _outcome(ttft_p99_ms=300.0, saturated=True), _outcome(status="oom"), None,
                    _outcome(net_energy_per_output_token_j=float("nan"))):
        assert energy.judge(outcome) == capacity.judge(outcome) == verdict(outcome, SLO, Objective.net)
    assert energy.judge(_outcome(net_energy_per_output_token_j=float("nan"))).reasons == (Reason.failed,)


def test_the_goals_values_and_how_they_are_shown():
    space = _space({"workload.rate_rps": "5,10"})
    cand = space.candidate({"workload.rate_rps": "10"})
    energy, capacity = EnergyGoal(slo=SLO), CapacityGoal(slo=SLO)
    assert energy.value(cand, _outcome()) == energy.shown(0.2) == 0.2
    assert energy.value(cand, None) == energy.value(cand, _outcome(energy_per_output_token_j=float("nan"))) == PENALTY_J
    assert capacity.value(cand, None) == -10.0 and capacity.shown(-10.0) == 10.0
    assert (energy.value_name, capacity.value_name) == ("J/output token", "offered req/s")


def test_the_space_check_and_the_headroom_search_are_per_kind():
    axes = _space({"batch_size": "1,8"}).axes
    SEARCH_KINDS[SearchKind.energy_slo].check_space(axes)
    with pytest.raises(ConfigError, match="needs a workload.rate_rps axis"):
        SEARCH_KINDS[SearchKind.capacity].check_space(axes)
    SEARCH_KINDS[SearchKind.capacity].check_space(_space({"workload.rate_rps": "5,10"}).axes)
    assert [k for k, spec in SEARCH_KINDS.items() if spec.headroom] == [SearchKind.energy_slo]
