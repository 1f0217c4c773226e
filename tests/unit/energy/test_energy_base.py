"""Window energy arithmetic: counter delta, integration, reset, mismatch, short window, idle."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from orchestrator.energy.base import PowerTrace, idle_power_from, window_energy


def _trace(power_w, counter_mj=None, dt_s=0.1):
    n = len(power_w)
    t = (np.arange(n) * dt_s * 1e9).astype(np.int64)
    if counter_mj is None:
        counter_mj = np.concatenate([[0.0], np.cumsum(np.asarray(power_w[:-1]) * dt_s * 1e3)])
    z = np.zeros(n)
    return PowerTrace("nvml", t, np.asarray(power_w, float), np.asarray(counter_mj, float), z, z, z, z, "GPU", "GPU-1")


def test_constant_power():
    tr = _trace([200.0] * 201)  # 20 s at 200 W
    row = window_energy(tr, int(2e9), int(12e9), idle_power_w=50.0)
    assert row["energy_j"] == pytest.approx(2000.0)
    assert row["energy_integrated_j"] == pytest.approx(2000.0)
    assert row["baseline_energy_j"] == pytest.approx(500.0) and row["net_energy_j"] == pytest.approx(1500.0)
    assert not row["energy_mismatch"] and not row["short_window"] and not row["energy_invalid"]
    assert row["mean_power_w"] == pytest.approx(200.0)


def test_counter_reset_invalidates():
    c = np.concatenate([np.arange(50) * 20.0, np.arange(51) * 20.0])  # drops to 0 half-way
    row = window_energy(_trace([200.0] * 101, c), 0, int(10e9), 50.0)
    assert row["energy_invalid"] and row["energy_j"] is None and "backwards" in row["energy_note"]


def test_mismatch_and_short_window():
    tr = _trace([200.0] * 101, np.arange(101) * 30.0)  # counter says 300 W, samples say 200 W
    row = window_energy(tr, 0, int(10e9), None)
    assert row["energy_mismatch"] and row["net_energy_j"] is None
    assert window_energy(_trace([100.0] * 101), 0, int(0.5e9), None)["short_window"]
    modeled = dataclasses.replace(tr, source="simulated")  # a model's samples of its own counter check nothing
    assert not window_energy(modeled, 0, int(10e9), None)["energy_mismatch"]


def test_trace_must_cover_the_window():
    row = window_energy(_trace([200.0] * 51), 0, int(10e9), 50.0)  # samples stop at 5 s
    assert row["energy_invalid"] and row["energy_j"] is None and "cover" in row["energy_note"]


def test_idle_power():
    assert idle_power_from(_trace([60.0] * 51), 0, int(5e9)) == pytest.approx(60.0)


def test_no_source():
    row = window_energy(PowerTrace("none", note="why"), 0, 10, None)
    assert row["energy_source"] == "none" and row["energy_j"] is None and row["energy_note"] == "why"
