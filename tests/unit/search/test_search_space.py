"""The search space from a sweep's jobs: ordered numeric axes, categorical ones, the product
rule, the budget, SLO verdicts, and the search config's checks (real Hydra compose)."""
from __future__ import annotations

import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.config.root import Config
from orchestrator.config.search import Method, SearchConfig, SloConfig
from orchestrator.driver.grid import default_choices, expand
from orchestrator.errors import ConfigError
from orchestrator.search.entry import budget_of
from orchestrator.search.outcome import Outcome, Reason, combined, verdict
from orchestrator.search.space import axes_of, jobs_of, space_of


def _space(params):
    jobs = jobs_of(params, ["engine=simulated", "gpu=h100"])
    return space_of(jobs, expand(Config(), default_choices(), jobs))


def test_numeric_axes_are_ordered_and_others_categorical():
    space = _space({"batch_size": "16,1,4", "quantization": "none,fp8"})
    axes = {a.key: a for a in space.axes}
    assert axes["batch_size"].ordered and axes["batch_size"].values == ("1", "4", "16")
    assert not axes["quantization"].ordered and axes["quantization"].values == ("none", "fp8")
    cand = space.candidate({"batch_size": "4", "quantization": "fp8"})
    assert cand.config.batch_size == 4 and cand.config.quantization.name == "fp8"
    assert len(space.candidates) == 6 and cand.label() == "batch_size=4 quantization=fp8"


def test_fixed_keys_are_not_axes_and_a_union_of_grids_is_refused():
    assert [a.key for a in axes_of([["gpu=h100", "batch_size=1"], ["gpu=h100", "batch_size=2"]])] == ["batch_size"]
    jobs = [["batch_size=1", "quantization=none"], ["batch_size=2", "quantization=fp8"]]
    with pytest.raises(ConfigError, match="one product of axes"):
        space_of(jobs, expand(Config(), default_choices(), jobs))


def test_budget_is_a_fraction_of_the_launchable_cells_with_confirmation_kept():
    assert budget_of(SearchConfig(), 48, 2) == (12, 2)
    assert budget_of(SearchConfig(max_cells=5, confirm_repeats=0), 48, 2) == (5, 0)
    assert budget_of(SearchConfig(method=Method.grid), 48, 2) == (48, 0)


def _outcome(**kw):
    base = dict(cell_id="c", status="ok", error="", saturated=False, ttft_p99_ms=100.0, tpot_p99_ms=10.0,
                energy_per_output_token_j=0.2, net_energy_per_output_token_j=0.1, energy_per_request_j=25.0,
                net_energy_per_request_j=12.0, offered_rate_rps=20.0, achieved_rate_rps=20.0,
                output_throughput_tok_s=2560.0)
    return Outcome(**{**base, **kw})


def test_verdict_names_every_violated_slo_and_saturation():
    slo = SloConfig(ttft_p99_ms=200.0, tpot_p99_ms=20.0)
    assert verdict(_outcome(), slo).feasible
    v = verdict(_outcome(ttft_p99_ms=300.0, saturated=True), slo)
    assert v.reasons == (Reason.ttft, Reason.saturated) and v.violations[0] == pytest.approx(0.5)
    assert verdict(_outcome(status="infeasible"), slo).reasons == (Reason.failed,)
    assert verdict(None, slo).reasons == (Reason.failed,)
    both = combined([verdict(_outcome(), slo), verdict(_outcome(tpot_p99_ms=30.0), slo)])
    assert both.reasons == (Reason.tpot,)  # a candidate violating in one repeat is infeasible


@pytest.mark.parametrize("override,message", [
    ("search.slo.ttft_p99_ms=-5", "search.slo.ttft_p99_ms=-5.0: must be a number of ms > 0"),
    ("search.slo.tpot_p99_ms=0", "search.slo.tpot_p99_ms=0.0: must be a number of ms > 0"),
    ("search.budget_fraction=2", "search.budget_fraction=2.0: must be in (0, 1]"),
])
def test_search_values_are_checked(compose, override, message):
    cfg = typed(compose(["+search=energy_slo", "search.slo.ttft_p99_ms=500", "search.slo.tpot_p99_ms=50", override]))
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert str(err.value) == message


def test_the_search_file_composes_its_axes_like_a_sweep(compose):
    cfg = compose(["+search=energy_slo", "search.slo.ttft_p99_ms=500", "search.slo.tpot_p99_ms=50"],
                  return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN" and "batch_size" in cfg.hydra.sweeper.params
    search = typed(cfg).search
    assert search.slo.ttft_p99_ms == 500.0 and search.objective.value == "gross"
    with pytest.raises(ConfigError, match="search.slo.ttft_p99_ms=None: required"):
        typed(compose(["+search=energy_slo"])).validate()
