"""Which cells share one engine start (``dispatch.make_units``), on the real composed config."""
from __future__ import annotations

from orchestrator.driver import grid
from orchestrator.driver.dispatch import make_units
from orchestrator.driver.grid import config_of

OFFERED = {"H200": True}


def _units(overrides_list, share=True):
    configs = [config_of(o) for o in overrides_list]
    cells = grid.cells(configs, {})
    units = make_units(cells, "t", OFFERED, share_engines=share)
    return [sorted((c.config.workload.name, c.config.batch_size, c.config.repeat) for c in u.cells) for u in units]


def _chat(workload, bs, *extra):
    return ["engine=vllm", "gpu=h200", f"workload={workload}", f"batch_size={bs}", *extra]


def test_chat_cells_of_one_batch_size_share_one_server_across_rates_and_repeats():
    units = _units([_chat("chat_medium", 8), _chat("chat_high", 8), _chat("chat_medium", 8, "repeat=1"),
                    _chat("chat_high", 8, "workload.duration_s=30"), _chat("chat_medium", 32)])
    assert sorted(units) == [
        [("chat_high", 8, 0), ("chat_high", 8, 0), ("chat_medium", 8, 0), ("chat_medium", 8, 1)],
        [("chat_medium", 32, 0)],
    ]


def test_a_different_server_option_or_seed_means_another_server():
    units = _units([_chat("chat_medium", 8), _chat("chat_high", 8, "engine.vllm.enforce_eager=true"),
                    _chat("chat_high", 8, "workload.seed=1")])
    assert len(units) == 3  # --enforce-eager and --seed are server arguments


def test_offline_cells_share_across_batch_sizes_not_workloads():
    off = ["engine=vllm", "gpu=h200", "workload=offline"]
    units = _units([[*off, "batch_size=1"], [*off, "batch_size=64"], [*off, "batch_size=8", "repeat=2"],
                    [*off, "batch_size=8", "workload.output.mean_tokens=64"]])
    assert sorted(len(u) for u in units) == [1, 3]


def test_share_engines_false_gives_one_task_per_cell():
    units = _units([_chat("chat_medium", 8), _chat("chat_high", 8)], share=False)
    assert len(units) == 2


def test_simulated_cells_never_share():
    sim = ["engine=simulated", "gpu=h200"]
    units = _units([[*sim, "workload=chat_medium", "batch_size=8"], [*sim, "workload=chat_high", "batch_size=8"],
                    [*sim, "workload=offline", "batch_size=8"], [*sim, "workload=offline", "batch_size=16"]])
    assert len(units) == 4
