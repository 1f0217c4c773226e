"""A sweep's GPU duty (``store.gpu_duty``) from runs rows: each engine start counted once however
many cells shared it, every measured cell's wall time held, only ok windows as duty; rows of
another sweep, and cells without a measurement, left out; per GPU type and overall."""
from __future__ import annotations

import pytest

from orchestrator.store.gpu_duty import DUTY_COLUMNS, gpu_duty
from orchestrator.store.schema import RUNS_SCHEMA


def row(cell, start, wall, window, gpu="h100", status="ok", sweep="s", host="n1", uuid="GPU-1", shared=1):
    return {"cell_id": cell, "sweep": sweep, "status": status, "gpu": gpu, "window_s": window, "cell_wall_s": wall,
            "host": host, "gpu_uuid": uuid, "engine": "vllm", "engine_start_s": start, "engine_shared_cells": shared}


def test_a_shared_start_counts_once():
    """Three offline batch sizes on one 60 s start, one server cell on its own 40 s start (on
    another GPU of the same type), a cell whose window ended in a timeout."""
    rows = [row("a", 60.0, 20.0, 15.0, shared=3), row("b", 60.0, 30.0, 25.0, shared=3),
            row("c", 60.0, 10.0, 8.0, shared=3, status="timeout"),
            row("d", 40.0, 50.0, 45.0, uuid="GPU-2")]
    duty = gpu_duty(rows, "s")
    want = {"cells": 4, "cells_ok": 3, "engine_starts": 2, "window_s": 85.0, "engine_start_s": 100.0,
            "cell_wall_s": 110.0, "gpu_held_s": 210.0, "duty": pytest.approx(85.0 / 210.0)}
    assert duty == {"overall": want, "by_gpu": {"h100": want}}


def test_per_gpu_type_and_what_is_left_out():
    rows = [row("a", 10.0, 5.0, 4.0), row("b", 20.0, 10.0, 9.0, gpu="a100", uuid="GPU-9", host="n2"),
            row("c", 10.0, 5.0, 4.0, sweep="other"),  # measured by another sweep (skipped here as complete)
            {**row("d", None, None, None, status="oom")}]  # a failed start: no duration in its row
    duty = gpu_duty(rows, "s")
    assert duty["overall"]["cells"] == 2 and duty["overall"]["gpu_held_s"] == 45.0
    assert duty["overall"]["duty"] == pytest.approx(13.0 / 45.0)
    assert duty["by_gpu"]["h100"]["duty"] == pytest.approx(4.0 / 15.0)
    assert duty["by_gpu"]["a100"]["duty"] == pytest.approx(9.0 / 30.0)
    assert gpu_duty(rows[3:], "s") is None and gpu_duty([], "s") is None


def test_equal_start_seconds_on_two_gpus_are_two_starts():
    duty = gpu_duty([row("a", 30.0, 5.0, 4.0), row("b", 30.0, 5.0, 4.0, uuid="GPU-2")], "s")
    assert duty["overall"]["engine_starts"] == 2 and duty["overall"]["engine_start_s"] == 60.0


def test_the_columns_it_reads_are_runs_columns():
    assert set(DUTY_COLUMNS) <= set(RUNS_SCHEMA.names)
