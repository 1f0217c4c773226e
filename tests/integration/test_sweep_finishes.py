"""A sweep always finishes, never loses a cell, and shows what each cell is doing — on real local
Ray clusters: cells no node can run end ``unschedulable``; a task's deadline keeps the cells that
were awaiting a retry; Ctrl-C keeps complete cells and resumes; two drivers on one store run each
cell once; phases stream from a real multi-phase cell; ``-m`` anywhere; an unwritable store."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.driver import grid
from orchestrator.errors import Status
from orchestrator.store.sweep_store import load
from tests.conftest import interrupt_once_stored, run_orchestrator, start_orchestrator


def _rows(store: Path):
    return {r["cell_id"]: r for r in load(str(store)).runs.to_pylist()}


@pytest.mark.slow
def test_cell_no_node_can_run_ends_unschedulable(tmp_path, ray_nodes):
    """Logical T4 GPUs only; an H100 cell ends unschedulable within the pending timeout, the T4
    cell of the same sweep ends ok, and the counts sum to the grid."""
    ray_nodes.head(num_cpus=2, num_gpus=1, resources='{"accelerator_type:T4": 1}')
    ray_nodes.wait_nodes(1)
    out = tmp_path / "unsched"
    t0 = time.monotonic()
    proc = run_orchestrator(["-m", "gpu=t4,h100", "engine=simulated", "dispatch.place_as_gpu=true", "model=tiny",
                             "workload=offline", "batch_size=2", "dispatch.pending_timeout_s=4", f"store.dir={out}",
                             f"dispatch.address={ray_nodes.address}"], timeout=180, check=False)
    wall = time.monotonic() - t0
    assert "sweep done: 1 ok, 1 unschedulable" in proc.stdout or "sweep done: 1 unschedulable, 1 ok" in proc.stdout
    assert proc.returncode == 3, proc.stderr[-2000:]  # a launched cell did not end ok
    assert "  1 unschedulable:" in proc.stdout and "no node can run it" in proc.stdout
    rows = list(_rows(out).values())
    by_gpu = {r["gpu"]: r for r in rows}
    assert by_gpu["t4"]["status"] == "ok"
    err = by_gpu["h100"]["error"]
    assert by_gpu["h100"]["status"] == "unschedulable"
    assert "accelerator_type:H100" in err and "T4" in err and "pending_timeout_s" in err
    assert wall < 120


def _fake_unit(unit):
    """A task body standing in for the worker: the first cell fails in a retryable way, the
    second never finishes (the task's deadline cancels it)."""
    from orchestrator.core.messages import CellResult, TaskStarted
    from orchestrator.store.cell_tables import status_tables

    yield TaskStarted(time.time())
    first = unit.cells[0]
    yield CellResult(first.cell_id, Status.engine_error, True,
                     status_tables(first, unit.sweep, Status.engine_error, "RuntimeError: flaky engine"))
    time.sleep(120)


def test_deadline_keeps_cells_awaiting_a_retry(tmp_path):
    """A task cancelled at its deadline: the cell that had failed and awaited its retry is
    recorded with its own failure and why the retry did not run; the other one is ``timeout``.
    Every cell gets exactly one result."""
    import dataclasses

    import ray
    from ray import cloudpickle  # Ray's own copy pickles the task body

    from orchestrator.config.groups import DispatchConfig
    from orchestrator.core.messages import UnitSpec
    from orchestrator.driver.dispatch import Dispatcher
    from orchestrator.driver.progress import SweepProgress

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    configs = [grid.config_of(["engine=simulated", "workload=offline", f"batch_size={b}"]) for b in (1, 2)]
    cells = grid.cells(configs, {})
    unit = UnitSpec(key="u", engine="simulated", engine_reason="", sweep="t", cells=tuple(cells), on_gpu=False)
    got = []
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        d = Dispatcher(dataclasses.replace(DispatchConfig(), cell_timeout_s=2.0, max_retries=1),
                       lambda cid, status, tables: got.append((cid, status, tables)), task_fn=_fake_unit)
        t0 = time.monotonic()
        d.run([unit], SweepProgress(2, enabled=False))
        assert time.monotonic() - t0 < 60
    finally:
        ray.shutdown()
    errors = {c: t["runs"].column("error")[0].as_py() for c, _, t in got}
    assert sorted(c for c, _, _ in got) == sorted(c.cell_id for c in cells), errors  # exactly one each
    status = {c: s for c, s, _ in got}
    assert status[cells[0].cell_id] is Status.engine_error and status[cells[1].cell_id] is Status.timeout, errors
    err = next(t for c, _, t in got if c == cells[0].cell_id)["runs"].column("error")[0].as_py()
    assert "flaky engine" in err and "its retry was not run" in err


def test_phases_stream_in_order_without_a_terminal(tmp_path):
    proc = run_orchestrator(["engine=simulated", "workload=offline", "batch_size=2", "engine.simulated.pace_s=4.5",
                             f"store.dir={tmp_path / 'p'}"], timeout=180)
    label = "llama2_7b/none/h100/bs2/offline/r0"
    lines = [ln for ln in proc.stdout.splitlines() if label in ln]
    order = ["engine starting", "warm-up", "measuring 0/4 batches", "draining 4/4 batches", ": ok"]
    idx = [next(i for i, ln in enumerate(lines) if key in ln) for key in order]
    assert idx == sorted(idx), lines
    assert len([ln for ln in lines if "warm-up" in ln]) == 1  # one line per phase change
    assert "nan" not in proc.stdout.lower()


def test_multirun_flag_after_overrides_runs_the_same_cells(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_orchestrator(["-m", "engine=simulated", "workload=offline", "batch_size=1,2", f"store.dir={a}"])
    run_orchestrator(["engine=simulated", "workload=offline", "-m", "batch_size=1,2", f"store.dir={b}"])
    assert set(_rows(a)) == set(_rows(b)) and len(_rows(a)) == 2


@pytest.mark.parametrize("multirun", [False, True])
def test_unwritable_store_is_one_line_before_ray(multirun):
    args = ["store.dir=/proc/nope", "engine=simulated"] + (["-m", "batch_size=1,2"] if multirun else [])
    proc = run_orchestrator(args, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: store.dir=/proc/nope: cannot create or write the store there")
    assert "Ray" not in proc.stdout and "Traceback" not in proc.stderr


def test_interrupt_keeps_complete_cells_and_resumes(tmp_path):
    out = tmp_path / "int"
    args = ["-m", "engine=simulated", "workload=offline", "batch_size=1,2,3,4,5,6", "engine.simulated.pace_s=4",
            f"store.dir={out}", "dispatch.num_cpus=2"]
    proc = start_orchestrator(args)
    stdout, stderr = interrupt_once_stored(proc, out)
    assert proc.returncode == 130, stderr
    kept = len(_rows(out))
    assert 1 <= kept < 6
    assert f"interrupted: kept {kept} ok in {out}" in stderr and "run the same command again" in stderr
    assert "Traceback" not in stderr
    duty = json.loads((out / "sweep.json").read_text())["gpu_duty"]["overall"]  # the kept cells' GPU duty
    assert (duty["cells"], duty["cells_ok"]) == (kept, kept) and duty["window_s"] > 0
    again = run_orchestrator(args, timeout=240)
    assert f"{6 - kept} to run, {kept} already complete" in again.stdout
    assert "sweep done: 6 ok" in again.stdout and len(_rows(out)) == 6
    assert not list((out / "claims").glob("*.json"))  # both drivers released their claims


def test_same_sweep_twice_at_once_runs_each_cell_once(tmp_path):
    out = tmp_path / "twice"
    args = ["-m", "engine=simulated", "workload=offline", "batch_size=1,2,3,4", "engine.simulated.pace_s=3",
            f"store.dir={out}", "dispatch.num_cpus=2", "dispatch.progress=false"]
    procs = [start_orchestrator(args) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    dispatched = 0
    for text in outs:
        for ln in text.splitlines():
            if ln.startswith("dispatched "):
                dispatched += int(ln.split()[1])
    assert dispatched == 4, outs  # each cell run by exactly one driver
    assert any("being run by another driver" in text for text in outs)
    assert len(_rows(out)) == 4


PIDS_FILE_ENV = "REAPER_TEST_PIDS"
SERVER = ("import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']);"
          " print(c.pid, flush=True); time.sleep(300)")


def _engine_like_unit(unit):
    """A task body that starts what ``vllm serve`` starts (a server in its own session whose child
    stays in its group, as EngineCore does) under the worker's reaper, then hangs."""
    from orchestrator.core.messages import TaskStarted
    from orchestrator.engines.process_group import die_with_parent
    from orchestrator.worker.reaper import Reaper

    yield TaskStarted(time.time())
    with Reaper():
        server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True,
                                  start_new_session=True, preexec_fn=die_with_parent())
        core = int(server.stdout.readline())
        Path(os.environ[PIDS_FILE_ENV]).write_text(f"{server.pid} {core}")
        time.sleep(300)


def test_a_cancelled_task_leaves_no_engine_process(tmp_path):
    """The dispatcher cancels a task past its deadline (``ray.cancel(force=True)``: the worker is
    killed, no ``finally`` runs); the server and its child end with it (on the H200 an
    EngineCore outlived an interrupted sweep holding 129 GiB). The cell ends ``timeout``."""
    import dataclasses

    import ray
    from ray import cloudpickle

    from orchestrator.config.groups import DispatchConfig
    from orchestrator.core.messages import UnitSpec
    from orchestrator.driver.dispatch import Dispatcher
    from orchestrator.driver.progress import SweepProgress
    from orchestrator.worker import reaper

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    pids_file = tmp_path / "pids"
    cells = grid.cells([grid.config_of(["engine=simulated", "workload=offline", "batch_size=1"])], {})
    unit = UnitSpec(key="u", engine="simulated", engine_reason="", sweep="t", cells=tuple(cells), on_gpu=False)
    got = []
    os.environ[PIDS_FILE_ENV] = str(pids_file)  # inherited by the local cluster's workers
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        d = Dispatcher(dataclasses.replace(DispatchConfig(), cell_timeout_s=8.0, max_retries=0),
                       lambda cid, status, tables: got.append(status), task_fn=_engine_like_unit)
        d.run([unit], SweepProgress(1, enabled=False))
    finally:
        ray.shutdown()
        os.environ.pop(PIDS_FILE_ENV)
    server, core = (int(x) for x in pids_file.read_text().split())
    deadline = time.monotonic() + reaper.GRACE_S + 5
    alive = [server, core]
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if (reaper.read_proc(p) or reaper.Proc(0, 0, 0, "Z")).state != "Z"]
        time.sleep(0.2)
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, "an engine process outlived its cancelled task"
    assert got == [Status.timeout]
