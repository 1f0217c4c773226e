"""Grid expansion: sizes, stable ids, -m == +sweep, fast path == Hydra compose, pre-launch statuses."""
from __future__ import annotations

import random

import pytest

from orchestrator import grid
from orchestrator.sweep import job_lists, plain


def _cells(compose, args, sweep=None):
    overrides = ([f"+sweep={sweep}"] if sweep else [])
    cfg = compose(overrides + [a for a in args if "," not in a], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params or {})
    jobs = job_lists(params, list(args), None)
    choices = dict(cfg.hydra.runtime.choices)
    return grid.expand(plain(cfg), choices, jobs), jobs, cfg


def test_smoke_and_full_sizes(compose):
    smoke, _, _ = _cells(compose, [], "smoke")
    assert len(smoke) == 6
    full, jobs, _ = _cells(compose, [], "full")
    assert len(jobs) == 2 * 5 * 3 * 3 * 7 == len(full) == 630
    statuses = {c.status for c in full}
    assert statuses == {None, "unsupported", "infeasible"}
    fp8_t4 = [c for c in full if c.config["quantization"]["name"] == "fp8" and c.gpu["name"] == "t4"]
    assert fp8_t4 and all(c.status == "unsupported" for c in fp8_t4)
    fp16_t4 = [c for c in full if c.config["quantization"]["name"] == "none" and c.gpu["name"] == "t4"]
    assert fp16_t4 and all(c.status == "infeasible" for c in fp16_t4)
    assert "largest batch that fits" in fp16_t4[0].reason
    ok_h100 = [c for c in full if c.gpu["name"] == "h100" and c.config["quantization"]["name"] == "none"]
    assert ok_h100 and all(c.status is None for c in ok_h100)


def test_cell_ids_are_stable_and_unique(compose):
    a, _, _ = _cells(compose, [], "full")
    b, _, _ = _cells(compose, [], "full")
    assert [c.cell_id for c in a] == [c.cell_id for c in b]
    assert len({c.cell_id for c in a}) == len(a)
    # The id depends on the measurement only, not on where results go.
    c, _, _ = _cells(compose, ["name=elsewhere", "store.dir=/tmp/x"], "smoke")
    d, _, _ = _cells(compose, [], "smoke")
    assert {x.cell_id for x in c} == {x.cell_id for x in d}


def test_multirun_equals_sweep_file(compose):
    swept, _, _ = _cells(compose, [], "smoke")
    by_hand, _, _ = _cells(compose, ["model=llama2_7b", "gpu=h100", "workload=chat_medium,offline",
                                     "batch_size=1,4,16", "workload.duration_s=10", "workload.num_batches=2"])
    assert sorted(c.cell_id for c in swept) == sorted(c.cell_id for c in by_hand)


def test_fast_path_equals_hydra_compose(compose):
    cells, jobs, _ = _cells(compose, [], "full")
    rng = random.Random(0)
    for job in rng.sample(jobs, 12) + [jobs[0], jobs[-1]]:
        composed = plain(compose([o for o in job]))
        expected = grid.cell_id_of(grid.canonical(composed, 0))
        fast = grid.job_config(plain(compose([])), _choices(compose), job)
        assert grid.cell_id_of(grid.canonical(fast, 0)) == expected, job


def _choices(compose):
    return dict(compose([], return_hydra_config=True).hydra.runtime.choices)


def test_value_override_types_checked(compose):
    with pytest.raises(grid.ConfigError, match="workload.duration_s=abc"):
        grid.job_config(plain(compose([])), _choices(compose), ["workload.duration_s=abc"])
    with pytest.raises(grid.ConfigError, match="unknown key"):
        grid.job_config(plain(compose([])), _choices(compose), ["dispatch.nope=1"])


def test_pinned_quantization_replaces_axis(compose):
    cells, _, _ = _cells(compose, ["model=llama2_7b_awq,llama2_7b", "quantization=none,fp8", "gpu=t4"])
    awq = [c for c in cells if c.config["model"]["name"] == "llama2_7b_awq"]
    assert len(awq) == 1 and awq[0].config["quantization"]["name"] == "awq" and awq[0].status is None
    assert len(cells) == 3


def test_hf_only_runs_offline(compose):
    cells, _, _ = _cells(compose, ["engine=hf", "workload=chat_medium,offline", "model=tiny"])
    by_wl = {c.config["workload"]["name"]: c for c in cells}
    assert by_wl["chat_medium"].status == "unsupported" and by_wl["offline"].status is None


def test_repeats_make_distinct_cells(compose):
    cells, _, _ = _cells(compose, ["repeats=3"])
    assert len(cells) == 3 and len({c.cell_id for c in cells}) == 3
    assert [c.config["repeat"] for c in cells] == [0, 1, 2]


def test_command_line_value_replaces_a_sweep_axis(compose):
    cells, _, _ = _cells(compose, ["batch_size=2"], "smoke")
    assert {c.batch_size for c in cells} == {2} and len(cells) == 2


def test_exact_count_checks(compose):
    with pytest.raises(grid.ConfigError, match="exact_count"):
        grid.cells_from_configs([grid.job_config(plain(compose([])), _choices(compose),
                                                 ["workload.exact_count=true", "workload.arrival=constant"])])
    with pytest.raises(grid.ConfigError, match="rate_rps x duration_s"):
        grid.cells_from_configs([grid.job_config(plain(compose([])), _choices(compose),
                                                 ["workload.exact_count=true", "workload.rate_rps=0.01",
                                                  "workload.duration_s=10"])])


def test_zero_cells_is_an_error():
    with pytest.raises(grid.ConfigError, match="zero cells"):
        grid.cells_from_configs([])
