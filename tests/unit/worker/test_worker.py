"""``worker.UnitRunner`` in-process (the body of a Ray task, without Ray) on the simulated engine:
the runs row a cell gets for its window (``min_window_s``, ``short_window``, batch stability) and
its drain (``n_requests_cancelled``, ``drain_timeout_s``, ``drain_s``, ``saturated``)."""
from __future__ import annotations

import math
import time

import pytest

from orchestrator.client.workload import drain_limit_s
from orchestrator.core.messages import UnitSpec
from orchestrator.driver import grid
from orchestrator.errors import Status
from orchestrator.worker.unit import UnitRunner


def _run_cells(*overrides, status=Status.ok):
    """Run one engine start's cells (each a list of overrides) -> {batch_size: (runs row, requests table)};
    each must end ``status``."""
    configs = [grid.config_of(["engine=simulated", "sampler=auto", "model=llama2_7b", "gpu=h100", *o])
               for o in overrides]
    cells = grid.cells(configs, {})
    unit = UnitSpec(key="u", engine="simulated", engine_reason="", sweep="t", cells=tuple(cells), on_gpu=False)
    out = {}
    for res in UnitRunner(unit).results():
        assert res.status is status, res.tables["runs"].column("error")[0].as_py()
        [row] = res.tables["runs"].to_pylist()
        out[row["batch_size"]] = (row, res.tables["requests"])
    return out


def test_offline_rows_record_the_window_rule():
    rows = _run_cells(["workload=offline", "batch_size=1"],
                      ["workload=offline", "batch_size=2", "workload.max_batches=4"])
    row, _ = rows[1]
    assert row["min_window_s"] == 10.0 and row["window_s"] >= 10.0 and not row["short_window"]
    assert row["n_batches_measured"] > 4 and row["n_requests_measured"] == row["n_batches_measured"]
    assert row["batch_output_tok_s_cv"] == pytest.approx(0.0, abs=1e-9)  # identical simulated batches
    assert row["n_requests_cancelled"] == 0 and row["drain_s"] is None and row["drain_timeout_s"] is None
    # capped at 4 batches of ~0.9 s (virtual): the window stays under 10 s and says so
    capped, _ = rows[2]
    assert capped["n_batches_measured"] == 4 and capped["window_s"] < 10.0 and capped["short_window"]
    assert capped["min_window_s"] == 10.0


def test_overloaded_open_loop_row_is_cancelled_and_saturated():
    """No measured request finished before the drain limit: the cell keeps its rows and flags but is
    never ``ok`` (issue 27: such a window measured nothing a latency or a throughput could stand on)."""
    (row, req), = _run_cells(["workload=chat_high", "batch_size=1", "workload.duration_s=5"],
                             status=Status.engine_error).values()
    assert row["status"] == "engine_error" and row["error"].startswith(
        f"no measured request completed ok: {row['n_requests_measured']} of {row['n_requests_measured']} cancelled")
    cfg = grid.config_of(["engine=simulated", "sampler=auto", "model=llama2_7b", "gpu=h100", "workload=chat_high",
                          "batch_size=1", "workload.duration_s=5"])
    assert row["drain_timeout_s"] == drain_limit_s(cfg) == 10.0
    assert row["drain_timeout_s"] <= row["drain_s"] < row["drain_timeout_s"] + 0.05
    assert row["n_requests_cancelled"] > 200 and row["saturated"] and row["n_requests_failed"] == 0
    statuses = req.column("status").to_pylist()
    assert statuses.count("cancelled") == row["n_requests_cancelled"] and set(statuses) == {"ok", "cancelled"}
    # ~0.84 s a request: the ~19 done by the stop are all warm-up ones (50 at 50 req/s before the
    # window); no measured request finished, so no latency (not a queue's hours)
    phases = req.column("phase").to_pylist()
    done = [p for p, st in zip(phases, statuses) if st == "ok"]
    assert 15 <= len(done) <= 22 and set(done) == {"warmup"}
    assert row["n_requests_ok"] == 0 and math.isnan(row["ttft_p50_ms"])
    # min_window_s is an offline rule: a 5 s open-loop window is not flagged for it
    assert row["min_window_s"] == 0.0 and row["window_s"] == pytest.approx(5.0) and not row["short_window"]


def test_the_engine_lives_under_a_reaper(monkeypatch):
    """Between engine start and stop of an engine that starts processes a reaper watcher
    (``python -m orchestrator.worker.reaper <this pid>``) runs beside the worker; it is gone once the
    unit's cells are done. An engine that starts none gets no watcher."""
    import os

    from orchestrator.engines.simulated import SimulatedEngine
    from orchestrator.worker import reaper

    def watchers():
        out = []
        for pid in reaper.processes():  # the watcher forks away: not a descendant
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if b"orchestrator.worker.reaper" in args and str(os.getpid()).encode() in args:
                out.append(pid)
        return out

    seen = []
    start = SimulatedEngine.start
    monkeypatch.setattr(SimulatedEngine, "start", lambda self: (seen.append(watchers()), start(self))[1])
    _run_cells(["workload=offline", "batch_size=1", "workload.min_window_s=0"])
    assert seen == [[]]  # the simulator starts no process: no watcher (it costs ~0.1 s a unit)
    seen.clear()
    monkeypatch.setattr(SimulatedEngine, "starts_processes", True)  # as vLLM and hf declare
    _run_cells(["workload=offline", "batch_size=1", "workload.min_window_s=0"])
    [[watcher]] = seen
    seen = [watcher]
    deadline = time.monotonic() + 5.0  # "done" reached it: it exits (without touching anything)
    while (reaper.read_proc(seen[0]) or reaper.Proc(0, 0, 0, "Z")).state != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (reaper.read_proc(seen[0]) or reaper.Proc(0, 0, 0, "Z")).state == "Z"
