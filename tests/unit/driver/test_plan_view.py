"""``--plan``'s engine starts (``driver.plan_view``): the store's starts are priced per engine
variant and GPU type, one value per start; "at most" holds one fresh machine's first start.

The H200 run of ``experiments/benchmarks/warm_start/`` is why: its plan priced the offline
engine's start (68 s: a spawned core, no spare) at the servers' spare-served median (30 s),
counted each shared start once per cell, and knew nothing of a fresh machine's first start
(154 s), so the 13 cells' 13.4 min of GPU time overran the plan's "at most" 11.3 min."""
from __future__ import annotations

import pytest

from orchestrator.driver import grid
from orchestrator.driver.dispatch import make_units
from orchestrator.driver.plan_view import StartPrior, measured_starts, plan_groups, start_prior
from orchestrator.engines import launched_engine

AXES = ["engine=vllm", "model=llama2_7b", "gpu=h200"]


def _cells(*overrides):
    return grid.cells([grid.config_of([*AXES, *o]) for o in overrides], {})


def _row(start_s, shared, arrival="poisson", status="ok", engine="vllm", gpu="H200", host="n1"):
    return {"status": status, "arrival": arrival, "accelerator_type": gpu, "engine": engine, "host": host,
            "gpu_uuid": "GPU-0", "engine_start_s": start_s, "engine_shared_cells": shared}


def test_starts_are_priced_per_variant_once_per_start():
    server = launched_engine(_cells(["workload=chat_medium", "batch_size=4"])[0])
    offline = launched_engine(_cells(["workload=offline", "batch_size=4"])[0])
    assert server is not offline
    rows = [_row(137.9, 2), _row(137.9, 2), _row(29.2, 2), _row(29.2, 2), _row(30.7, 2), _row(30.7, 2),
            *[_row(68.0, 7, arrival="offline")] * 7,
            _row(500.0, 1, status="failed"),  # a failed start says nothing
            _row(10.0, 1, engine="retired_engine")]  # an engine this version does not know: left out
    starts = measured_starts(rows)
    assert starts == {(server, "H200"): StartPrior(30.7, 137.9, 3), (offline, "H200"): StartPrior(68.0, 68.0, 1)}


def test_a_cell_without_a_measured_start_takes_its_engines_typical():
    cell = _cells(["workload=offline", "batch_size=4"])[0]
    typical = launched_engine(cell).typical_start_s
    assert start_prior(cell, {}) == StartPrior(typical, typical, 0)
    assert start_prior(cell, measured_starts([_row(68.0, 1, arrival="offline", gpu="H100")])) == \
        StartPrior(typical, typical, 0)  # another GPU type's start does not price this one


def test_at_most_holds_one_fresh_machines_first_start_per_group():
    cells = _cells(*[[f"workload={w}", f"batch_size={b}"] for w in ("chat_medium", "offline") for b in (2, 8)])
    units = make_units(cells, "t", {"H200": True})
    assert len(units) == 3  # two servers (one per batch size), one offline engine for both batch sizes
    rows = [_row(137.9, 2), _row(29.2, 2), _row(30.7, 2), _row(68.0, 7, arrival="offline")]
    starts = measured_starts(rows)
    bare = plan_groups(cells, set(), units, {})[("H200", "vllm")]
    g = plan_groups(cells, set(), units, starts)[("H200", "vllm")]
    assert g.starts == 3 and g.to_run == 4
    windows = bare.gpu_s - 3 * launched_engine(cells[0]).typical_start_s
    assert g.gpu_s == pytest.approx(windows + 2 * 30.7 + 68.0)
    drains = bare.gpu_max_s - bare.gpu_s
    assert g.cold_extra_s == pytest.approx(137.9 - 30.7)  # once, not once per start
    assert g.gpu_max_s == pytest.approx(g.gpu_s + drains + 137.9 - 30.7)
