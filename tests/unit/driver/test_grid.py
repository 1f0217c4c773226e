"""Grid expansion: sizes, stable ids, -m == +sweep, fast path == Hydra compose, pre-launch statuses."""
from __future__ import annotations

import random

import pytest

from orchestrator.app.hydra_entry import expand_jobs, job_lists, typed
from orchestrator.core.cell import EngineChoice
from orchestrator.driver import grid
from orchestrator.errors import ConfigError, Status

# ``engine=auto`` (the default) resolved as on a cluster whose every GPU type has vllm.
AUTO = {t: EngineChoice("vllm", "test: a node of this type has vllm") for t in ("T4", "A100", "A800", "H100", "H200")}


def _cells(compose, args, sweep=None, auto=AUTO):
    overrides = ([f"+sweep={sweep}"] if sweep else [])
    cfg = compose(overrides + [a for a in args if "," not in a], return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params or {})
    jobs = job_lists(params, list(args), None)
    _, configs = expand_jobs(cfg, jobs)
    return grid.cells(configs, auto), jobs, cfg


def _id(config):
    """The cell_id of one root config's first cell."""
    return grid.cells(grid.cell_configs([config]), AUTO)[0].cell_id


def test_smoke_and_full_sizes(compose):
    smoke, _, _ = _cells(compose, [], "smoke")
    assert len(smoke) == 6
    full, jobs, _ = _cells(compose, [], "full")
    assert len(jobs) == 2 * 5 * 3 * 3 * 7 == len(full) == 630
    statuses = {c.status for c in full}
    assert statuses == {None, Status.unsupported, Status.infeasible}
    assert all(c.engine == "vllm" and c.config.engine.name == "auto" for c in full)
    fp8_t4 = [c for c in full if c.config.quantization.name == "fp8" and c.config.gpu.name == "t4"]
    assert fp8_t4 and all(c.status is Status.unsupported for c in fp8_t4)
    fp16_t4 = [c for c in full if c.config.quantization.name == "none" and c.config.gpu.name == "t4"]
    assert fp16_t4 and all(c.status is Status.infeasible for c in fp16_t4)
    assert "largest batch that fits" in fp16_t4[0].reason
    ok_h100 = [c for c in full if c.config.gpu.name == "h100" and c.config.quantization.name == "none"]
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
    _, jobs, _ = _cells(compose, [], "full")
    rng = random.Random(0)
    base = typed(compose([]))
    for job in rng.sample(jobs, 12) + [jobs[0], jobs[-1]]:
        composed = typed(compose([o for o in job]))
        fast = grid.job_config(base, _choices(compose), job)
        assert fast == composed, job  # every field of the typed config, not only the identity
        assert _id(fast) == _id(composed), job
    assert len({_id(typed(compose(list(job)))) for job in (jobs[0], jobs[-1])}) == 2


def _choices(compose):
    return dict(compose([], return_hydra_config=True).hydra.runtime.choices)


def test_value_override_types_checked(compose):
    with pytest.raises(ConfigError, match="workload.duration_s=abc"):
        grid.job_config(typed(compose([])), _choices(compose), ["workload.duration_s=abc"])
    with pytest.raises(ConfigError, match="unknown key"):
        grid.job_config(typed(compose([])), _choices(compose), ["dispatch.nope=1"])


def test_pinned_quantization_replaces_axis(compose):
    cells, _, _ = _cells(compose, ["model=llama2_7b_awq,llama2_7b", "quantization=none,fp8", "gpu=t4"])
    awq = [c for c in cells if c.config.model.name == "llama2_7b_awq"]
    assert len(awq) == 1 and awq[0].config.quantization.name == "awq" and awq[0].status is None
    assert len(cells) == 3


def test_hf_only_runs_offline(compose):
    cells, _, _ = _cells(compose, ["engine=hf", "workload=chat_medium,offline", "model=tiny"])
    by_wl = {c.config.workload.name: c for c in cells}
    assert by_wl["chat_medium"].status is Status.unsupported and by_wl["offline"].status is None
    assert "static batches only" in by_wl["chat_medium"].reason
    assert {c.engine for c in cells} == {"hf"}


def test_repeats_make_distinct_cells(compose):
    cells, _, _ = _cells(compose, ["repeats=3"])
    assert len(cells) == 3 and len({c.cell_id for c in cells}) == 3
    assert [c.config.repeat for c in cells] == [0, 1, 2]


def test_command_line_value_replaces_a_sweep_axis(compose):
    cells, _, _ = _cells(compose, ["batch_size=2"], "smoke")
    assert {c.config.batch_size for c in cells} == {2} and len(cells) == 2


def test_exact_count_checks(compose):
    with pytest.raises(ConfigError, match="exact_count"):
        grid.cell_configs([grid.job_config(typed(compose([])), _choices(compose),
                                           ["workload.exact_count=true", "workload.arrival=constant"])])
    with pytest.raises(ConfigError, match="rate_rps x duration_s"):
        grid.cell_configs([grid.job_config(typed(compose([])), _choices(compose),
                                           ["workload.exact_count=true", "workload.rate_rps=0.01",
                                            "workload.duration_s=10"])])


def test_zero_cells_is_an_error():
    with pytest.raises(ConfigError, match="zero cells"):
        grid.cell_configs([])


# ------------------------------------------------------------------ grid.prelaunch_status, one cell at a time


@pytest.mark.parametrize("overrides, engine, status, needle", [
    (["engine=hf", "model=tiny", "workload=chat_medium"], "hf", Status.unsupported, "static batches only"),
    (["engine=hf", "model=tiny", "workload=offline", "quantization=awq"], "hf", Status.unsupported,
     "does not run quantization awq"),
    (["engine=vllm", "quantization=fp8", "gpu=t4", "workload=offline"], "vllm", Status.unsupported,
     "fp8 needs compute capability >= 8.0, t4 has 7.5"),
    (["engine=vllm", "quantization=int8", "gpu=h200", "workload=offline"], "vllm", Status.unsupported,
     "does not run quantization int8: vLLM's in-flight bitsandbytes quantizes to 4 bits"),
    (["engine=vllm", "model=mistral_7b_int8", "gpu=a800", "workload=chat_medium"], "vllm", Status.unsupported,
     "use engine=hf for bitsandbytes LLM.int8, or quantization=fp8 for 8-bit weights under vLLM"),
    (["engine=simulated", "quantization=fp8", "gpu=t4", "workload=offline"], "simulated", Status.unsupported,
     "compute capability"),
    (["engine=vllm", "model=llama2_7b", "quantization=none", "gpu=t4", "batch_size=4096"], "vllm",
     Status.infeasible, "largest batch that fits"),
])
def test_prelaunch_status(overrides, engine, status, needle):
    got, reason = grid.prelaunch_status(grid.config_of(overrides), engine)
    assert got is status and needle in reason, reason


def test_seed_sweeps_run_what_the_seeds_measured(compose):
    """The INT8 seed measured transformers + bitsandbytes LLM.int8: its sweep runs engine=hf
    (vLLM has no 8-bit bitsandbytes); the AWQ seed runs vLLM (engine=auto) on T4s."""
    int8, _, _ = _cells(compose, [], "seed_a800_int8")
    assert len(int8) == 7 and all(c.engine == "hf" and c.status is None for c in int8)
    assert all(c.config.quantization.name == "int8" for c in int8)
    awq, _, _ = _cells(compose, [], "seed_t4_awq")
    assert len(awq) == 4 and all(c.engine == "vllm" and c.status is None for c in awq)
    auto_int8, _, _ = _cells(compose, ["model=mistral_7b_int8", "workload=offline"])  # engine=auto -> vllm here
    assert auto_int8[0].status is Status.unsupported and "engine=hf" in auto_int8[0].reason


def test_prelaunch_status_none_for_a_cell_that_runs():
    assert grid.prelaunch_status(grid.config_of(["engine=hf", "model=tiny", "workload=offline"]), "hf") == (None, "")
    assert grid.prelaunch_status(grid.config_of(["engine=vllm", "model=llama2_7b", "gpu=h100"]), "vllm") == (None, "")
    # the same fp16 7B fits an H100 at batch 8 but not at 4096
    big, reason = grid.prelaunch_status(grid.config_of(["engine=vllm", "gpu=h100", "batch_size=4096"]), "vllm")
    assert big is Status.infeasible and "GiB usable on h100" in reason


def _study_cells(compose, *args):
    cfg = compose(["+sweep=h200_study", *[a for a in args if "," not in a]], return_hydra_config=True)
    grids = [dict(g) for g in cfg.hydra.sweeper.grids]
    jobs = job_lists(dict(cfg.hydra.sweeper.params), list(args), None, grids)
    _, configs = expand_jobs(cfg, jobs)
    return grid.cells(configs, AUTO)


def test_a_sweep_of_grids_is_their_union_in_order(compose):
    cells = _study_cells(compose)
    assert len(cells) == 27 + 16 + 4 + 14 + 14 + 18 + 5
    first = cells[:27]  # grid 1 first: fp16 offline, 9 batch sizes x 3 repeats
    assert {(c.config.quantization.name, c.config.workload.name) for c in first} == {("none", "offline")}
    assert sorted({c.config.batch_size for c in first}) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert {c.config.repeat for c in first} == {0, 1, 2}
    chat = cells[27:43]
    assert {c.config.workload.name for c in chat} == {"chat_medium", "chat_high"}
    assert {c.config.quantization.name for c in chat} == {"none", "awq"}
    eager = cells[43:47]
    assert all(c.config.engine.vllm.enforce_eager for c in eager) and not any(
        c.config.engine.vllm.enforce_eager for c in cells[:43])
    hf = [c for c in cells if c.engine == "hf"]
    assert len(hf) == 14 and {c.config.engine.hf.int8_threshold for c in hf} == {0.0, 6.0}
    last = cells[-5:]  # grid 7: the chat_medium max-num-seqs grid 2 skips
    assert {(c.config.workload.name, c.config.quantization.name) for c in last} == {("chat_medium", "none")}
    assert sorted(c.config.batch_size for c in last) == [2, 4, 16, 64, 128]
    assert all(c.config.gpu.name == "h200" and c.status is None for c in cells), [c.reason for c in cells if c.status]
    assert len({c.cell_id for c in cells}) == len(cells)


def test_grids_share_duplicate_jobs_once_and_the_command_line_applies_to_every_grid(compose):
    cells = _study_cells(compose, "engine=simulated")
    # simulated: the hf thresholds and enforce_eager are other engines' options, so those cells coincide
    assert len(cells) == 98 - 7 - 4 and {c.engine for c in cells} == {"simulated"}
    only = _study_cells(compose, "batch_size=8")
    assert {c.config.batch_size for c in only} == {8}


# ``engine=auto`` on an H100 node that has vllm and, as the fallback, hf (torch, transformers, bitsandbytes)
WITH_HF = {t: EngineChoice("vllm", "test: vllm", fallbacks=(EngineChoice("hf", "test: hf"),)) for t in AUTO}


def test_auto_gives_each_cell_the_first_engine_that_runs_it(compose):
    """vllm refuses bitsandbytes INT8 before launch; hf runs it, offline only: the INT8 offline
    cells go to hf, INT8 chat cells stay vllm's refusal, everything else stays on vllm."""
    full, _, _ = _cells(compose, [], "full", auto=WITH_HF)
    int8 = [c for c in full if c.config.quantization.name == "int8"]
    offline = [c for c in int8 if c.config.workload.kind.value == "offline" and c.config.gpu.name == "h100"]
    assert offline and {c.engine for c in offline} == {"hf"}
    assert all(c.engine_reason == "vllm refuses it: engine vllm does not run quantization int8; test: hf"
               for c in offline)
    online = [c for c in int8 if c.config.workload.kind.value != "offline"]
    assert online and {c.engine for c in online} == {"vllm"}
    assert all(c.status is Status.unsupported and "bitsandbytes" in c.reason for c in online)
    assert {c.engine for c in full if c.config.quantization.name != "int8"} == {"vllm"}
    # the engine is part of the identity: a fallback cell is another cell than vllm's refusal
    plain, _, _ = _cells(compose, [], "full")
    assert {c.cell_id for c in offline}.isdisjoint({c.cell_id for c in plain})
    assert len(full) == len(plain) == 630


def test_auto_keeps_the_first_engine_when_every_fallback_refuses(compose):
    # fp8 on a T4 (compute capability 7.5 < 8.0): every engine refuses it; vllm's reason stays
    full, _, _ = _cells(compose, [], "full", auto=WITH_HF)
    fp8_t4 = [c for c in full if c.config.quantization.name == "fp8" and c.config.gpu.name == "t4"]
    assert fp8_t4 and all(c.engine == "vllm" and c.status is Status.unsupported and "compute capability" in c.reason
                          for c in fp8_t4)


def test_an_option_the_offline_engine_cannot_honour_is_refused_before_launch():
    """``engine.vllm.api`` is a server cell's: an offline cell asked to use chat is ``unsupported``
    (never two ids for one measurement); chat cells run."""
    offline = grid.config_of(["engine=vllm", "gpu=h100", "workload=offline", "engine.vllm.api=chat"])
    [cell] = grid.cells([offline], {})
    assert cell.status is Status.unsupported and "offline cells run LLM.generate, no API" in cell.reason
    chat = grid.config_of(["engine=vllm", "gpu=h100", "workload=chat_medium", "engine.vllm.api=chat"])
    assert grid.cells([chat], {})[0].status is None
