"""The live ETA per engine and GPU type (``driver.eta``): a simulated cell's second says nothing
of a vLLM cell's minutes; measured costs rescale their own group only; a task's engine start is
paid once, by its first cell; lanes divide a pool."""
from __future__ import annotations

import pytest

from orchestrator.driver import grid
from orchestrator.driver.dispatch import make_units
from orchestrator.driver.eta import SweepEta, measured_costs
from orchestrator.driver.plan_view import StartPrior
from orchestrator.engines import launched_engine

AXES = ["model=llama2_7b", "gpu=h100", "workload=offline"]


def _units(engine: str, sizes=(1, 8)):
    cells = grid.cells([grid.config_of([f"engine={engine}", *AXES, f"batch_size={b}"]) for b in sizes], {})
    return make_units(cells, "t", {"H100": True})


def _lanes(gpu: int = 1, cpu: int = 2):
    return lambda accelerator_type, on_gpu: gpu if on_gpu else cpu


def test_priors_per_engine_and_gpu_type_and_the_slowest_pool_decides():
    vllm, sim = _units("vllm"), _units("simulated", sizes=(1, 2, 4, 8))
    assert len(vllm) == 1 and len(vllm[0].cells) == 2  # one engine start for both offline cells
    eta = SweepEta(vllm + sim, {}, _lanes())
    # vllm: 120 s typical start shared by 2 cells + (5 s idle baseline + 10 s window) each
    assert eta.groups() == {("vllm", "H100"): pytest.approx(150.0), ("simulated", "H100"): pytest.approx(2.0)}
    assert eta.remaining_s() == pytest.approx(150.0)  # the GPU pool; the CPU pool: 2 s / 2 lanes
    offline = launched_engine(vllm[0].cells[0])  # vLLM's offline engine: its starts priced apart from a server's
    measured = SweepEta(vllm, {(offline, "H100"): StartPrior(60.0, 150.0, 3)}, _lanes())  # the store's median start
    assert measured.remaining_s() == pytest.approx(60.0 + 2 * 15.0)


def test_fast_simulated_cells_do_not_speak_for_gpu_cells():
    vllm, sim = _units("vllm"), _units("simulated", sizes=(1, 2, 4, 8))
    eta = SweepEta(vllm + sim, {}, _lanes())
    for cell in [c for u in sim for c in u.cells][:3]:
        eta.finished(cell.cell_id, {"cell_wall_s": 0.05, "engine_start_s": 0.0})  # ten times faster than its prior
    assert eta.groups()[("simulated", "H100")] == pytest.approx(0.05)  # 1 left x 0.5 s x 0.1
    assert eta.remaining_s() == pytest.approx(150.0)  # unchanged: the mean pace would say ~0.2 s
    first = vllm[0].cells[0]
    eta.finished(first.cell_id, {"cell_wall_s": 30.0, "engine_start_s": 240.0})  # start and window: twice the estimates
    assert eta.remaining_s() == pytest.approx(30.0)  # the other cell's window only (15 s x 2): the start is paid
    eta.finished(first.cell_id, {"cell_wall_s": 1.0, "engine_start_s": 1.0})  # a cell ends once
    assert eta.remaining_s() == pytest.approx(30.0)


def test_lanes_divide_a_pool_and_failures_keep_the_scale():
    tasks = _units("vllm", sizes=(1, 2)) + _units("vllm", sizes=(4, 8))  # two tasks of 120 + 2 x 15 s
    assert len(tasks) == 2
    assert SweepEta(tasks, {}, _lanes(gpu=1)).remaining_s() == pytest.approx(300.0)
    two = SweepEta(tasks, {}, _lanes(gpu=2))
    assert two.remaining_s() == pytest.approx(150.0)
    cell = tasks[0].cells[0]
    two.finished(cell.cell_id, {"cell_wall_s": None, "engine_start_s": None})  # failed: nothing measured
    assert two.groups()[("vllm", "H100")] == pytest.approx(300.0 - 120.0 - 15.0)  # its start and window leave
    assert two.remaining_s() == pytest.approx(150.0)  # the other task is the longest left


def test_a_rows_costs_are_its_wall_time_and_its_tasks_start():
    assert measured_costs({"cell_wall_s": 20.0, "engine_start_s": 90.0}) == (20.0, 90.0)
    assert measured_costs({"cell_wall_s": None}) == (None, None)


def test_cells_of_one_task_run_one_after_another_whatever_the_lanes():
    """Four cells on one engine start are one task: many idle lanes do not make it faster."""
    vllm = _units("vllm", sizes=(1, 2, 4, 8))
    assert len(vllm) == 1
    wide = SweepEta(vllm, {}, _lanes(gpu=8))
    assert wide.remaining_s() == pytest.approx(120.0 + 4 * 15.0)  # not 180 / 8
    two_tasks = SweepEta(vllm + _units("vllm", sizes=(16,)), {}, _lanes(gpu=8))  # another start: a second task
    assert two_tasks.remaining_s() == pytest.approx(180.0)  # the longer task of the two


def test_a_hosts_first_start_does_not_rescale_the_next_starts():
    """A fresh machine's first start builds its kernels (214.5 s against 42-62 s after it on an
    H100): the other starts keep their prior; cells and later starts still rescale."""
    tasks = _units("vllm", sizes=(1,)) + _units("vllm", sizes=(2,)) + _units("vllm", sizes=(4,))
    assert len(tasks) == 3  # a start each: 120 s + a 15 s cell
    eta = SweepEta(tasks, {}, _lanes())
    first, second = tasks[0].cells[0], tasks[1].cells[0]
    eta.finished(first.cell_id, {"cell_wall_s": 15.0, "engine_start_s": 360.0, "host": "a"})
    assert eta.remaining_s() == pytest.approx(2 * 135.0)  # not 2 x (120 x 3 + 15)
    eta.finished(second.cell_id, {"cell_wall_s": 15.0, "engine_start_s": 60.0, "host": "a"})  # a warm start
    assert eta.remaining_s() == pytest.approx(135.0 * (15 + 60 + 15) / (15 + 120 + 15))  # scaled by the rest
    other = SweepEta(tasks, {}, _lanes(gpu=2))
    other.finished(first.cell_id, {"cell_wall_s": 15.0, "engine_start_s": 360.0, "host": "a"})
    other.finished(second.cell_id, {"cell_wall_s": 15.0, "engine_start_s": 360.0, "host": "b"})  # b's first
    assert other.remaining_s() == pytest.approx(135.0)
