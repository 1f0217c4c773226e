"""NvmlSampler against an autospec'd pynvml (``create_autospec`` of the real module): the sampling
thread, the typed error of every failure path, and the energy arithmetic of the traces it makes
(counter delta, counter reset -> invalid, counter vs integrated power mismatch, field-186
fallback)."""
from __future__ import annotations

import sys
import time

import numpy as np
import pytest

pynvml = pytest.importorskip("pynvml")

from orchestrator import errors
from orchestrator.energy import gpuinfo
from orchestrator.energy import nvml as nvml_module
from orchestrator.energy.base import window_energy
from orchestrator.energy.nvml import POWER_FIELD_INSTANT, NvmlSampler
from tests.conftest import autospec_pynvml  # noqa: E402

UUID = "GPU-12345678-aaaa-bbbb-cccc-0123456789ab"
INTERVAL_S = 0.01


def err(code):
    return pynvml.NVMLError(code)


class FakeGpu:
    """A GPU drawing ``power_w`` (true power): the counter integrates it exactly over real
    monotonic time; field 186 reports ``field_power_w`` (defaults to the true power)."""

    def __init__(self, power_w=200.0):
        self.power_w = power_w
        self.field_power_w = None
        self.t0_ns = time.monotonic_ns()
        self.energy_offset_mj = 5_000_000.0  # mJ since "driver load"
        self.reset_at_ns = None  # counter drops back to 0-ish at this time (driver reload)
        self.field_return = pynvml.NVML_SUCCESS
        self.lost_after_calls = None
        self.energy_calls = 0

    def energy_mj(self, handle):
        self.energy_calls += 1
        if self.lost_after_calls is not None and self.energy_calls > self.lost_after_calls:
            raise err(pynvml.NVML_ERROR_GPU_IS_LOST)
        now = time.monotonic_ns()
        e = self.energy_offset_mj + self.power_w * (now - self.t0_ns) / 1e6
        if self.reset_at_ns is not None and now >= self.reset_at_ns:
            e -= self.energy_offset_mj + self.power_w * (self.reset_at_ns - self.t0_ns) / 1e6
        return int(e)

    def field_values(self, handle, ids):
        assert list(ids) == [POWER_FIELD_INSTANT]
        arr = (pynvml.c_nvmlFieldValue_t * 1)()
        arr[0].fieldId = POWER_FIELD_INSTANT
        arr[0].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
        arr[0].nvmlReturn = self.field_return
        p = self.power_w if self.field_power_w is None else self.field_power_w
        arr[0].value.uiVal = int(p * 1000)
        return arr

    def memory(self, handle):
        m = pynvml.c_nvmlMemory_t()
        m.total, m.used, m.free = 80 * 2**30, 20 * 2**30, 60 * 2**30
        return m

    def util(self, handle):
        u = pynvml.c_nvmlUtilization_t()
        u.gpu, u.memory = 97, 40
        return u


@pytest.fixture
def nv(monkeypatch):
    """An autospec'd pynvml in sys.modules (real constants and NVMLError), wired to a FakeGpu."""
    m = autospec_pynvml()
    gpu = FakeGpu()
    m.nvmlDeviceGetHandleByUUID.return_value = "handle-0"
    m.nvmlDeviceGetName.return_value = "NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetTotalEnergyConsumption.side_effect = gpu.energy_mj
    m.nvmlDeviceGetFieldValues.side_effect = gpu.field_values
    m.nvmlDeviceGetPowerUsage.side_effect = lambda h: int(gpu.power_w * 1000 * 0.9)  # a lagging average
    m.nvmlDeviceGetUtilizationRates.side_effect = gpu.util
    m.nvmlDeviceGetMemoryInfo.side_effect = gpu.memory
    m.nvmlDeviceGetClockInfo.return_value = 1980
    m.nvmlDeviceGetTemperature.return_value = 41
    m.gpu = gpu
    monkeypatch.setitem(sys.modules, "pynvml", m)
    return m


def run_sampler(duration_s=0.25, interval_s=INTERVAL_S, during=None):
    s = NvmlSampler(UUID, interval_s=interval_s)
    s.start()
    t_start = time.monotonic_ns()
    if during:
        during()
    time.sleep(duration_s)
    t_end = time.monotonic_ns()
    return s.stop(), t_start, t_end


# ---------------------------------------------------------------------------- happy path


def test_trace_has_every_column_by_uuid_at_the_requested_rate(nv):
    trace, _, _ = run_sampler(0.3)
    nv.nvmlDeviceGetHandleByUUID.assert_called_with(UUID)
    assert trace.source == "nvml" and trace.gpu_uuid == UUID and trace.gpu_name == "NVIDIA H100 80GB HBM3"
    assert len(trace) >= 15
    assert np.all(np.diff(trace.t_ns) > 0)
    gaps_s = np.diff(trace.t_ns) / 1e9
    assert np.median(gaps_s) == pytest.approx(INTERVAL_S, abs=0.004)
    assert np.allclose(trace.power_w, 200.0)
    assert np.all(np.diff(trace.energy_mj) >= 0)
    assert np.allclose(trace.util_pct, 97) and np.allclose(trace.memory_used_mib, 20 * 1024)
    assert np.allclose(trace.sm_clock_mhz, 1980) and np.allclose(trace.temperature_c, 41)
    assert "field 186" in trace.note and "energy: total-energy counter" in trace.note
    nv.nvmlDeviceGetClockInfo.assert_called_with("handle-0", pynvml.NVML_CLOCK_SM)
    nv.nvmlShutdown.assert_called_once_with()


def test_timestamps_are_on_the_monotonic_clock(nv):
    before = time.monotonic_ns()
    trace, _, _ = run_sampler(0.05)
    after = time.monotonic_ns()
    assert before <= trace.t_ns[0] and trace.t_ns[-1] <= after


def test_gaps_never_exceed_100_ms_and_are_dithered(nv):
    trace, _, _ = run_sampler(0.45, interval_s=0.1)
    assert len(trace) >= 5  # first + >= 4 in the thread + last
    gaps_s = np.diff(trace.t_ns[:-1]) / 1e9
    assert np.max(gaps_s) <= 0.1 + 0.03  # >= 10 Hz even with the dither
    trace, _, _ = run_sampler(0.6, interval_s=0.02)
    gaps_s = np.diff(trace.t_ns[1:-1]) / 1e9  # the thread's own samples
    assert 0.015 <= np.mean(gaps_s) <= 0.03  # 50 Hz on average
    assert np.std(gaps_s) > 0.003  # dithered: not a fixed grid that can lock onto a periodic load


def test_interval_must_give_at_least_10_hz():
    with pytest.raises(ValueError, match="10 Hz"):
        NvmlSampler(UUID, interval_s=0.2)
    with pytest.raises(ValueError):
        NvmlSampler(UUID, interval_s=0.0)


def test_stop_before_start_and_double_start(nv):
    s = NvmlSampler(UUID, INTERVAL_S)
    with pytest.raises(RuntimeError):
        s.stop()
    s.start()
    with pytest.raises(RuntimeError):
        s.start()
    s.stop()


def test_no_uuid_means_cuda_device_0_of_this_process(nv, monkeypatch):
    calls = []
    monkeypatch.setattr(nvml_module, "assigned_gpu", lambda env=None: calls.append(1) or gpuinfo.GpuIdentity(
        "NVIDIA H100", UUID, 0, 81559.0, "580.1", "13.0"))
    s = NvmlSampler(None, INTERVAL_S)
    s.start()
    trace = s.stop()
    assert calls and trace.gpu_uuid == UUID
    nv.nvmlDeviceGetHandleByUUID.assert_called_with(UUID)


# ---------------------------------------------------------------------------- arithmetic


def test_counter_delta_and_integrated_power_agree(nv):
    trace, a, b = run_sampler(0.4)
    t0, t1 = a + 50_000_000, b - 50_000_000
    row = window_energy(trace, t0, t1, idle_power_w=50.0)
    window_s = (t1 - t0) / 1e9
    assert row["energy_j"] == pytest.approx(200.0 * window_s, rel=0.02)
    assert row["energy_integrated_j"] == pytest.approx(200.0 * window_s, rel=0.02)
    assert not row["energy_mismatch"] and not row["energy_invalid"]
    assert row["baseline_energy_j"] == pytest.approx(50.0 * window_s)
    assert row["net_energy_j"] == pytest.approx(row["energy_j"] - row["baseline_energy_j"])
    assert row["gpu_util_mean_pct"] == pytest.approx(97)


def test_counter_reset_inside_the_window_invalidates_never_clamps(nv):
    nv.gpu.reset_at_ns = time.monotonic_ns() + 150_000_000
    trace, a, b = run_sampler(0.35)
    assert np.any(np.diff(trace.energy_mj) < 0), "the raw counter must be kept, reset included"
    row = window_energy(trace, a, b, idle_power_w=None)
    assert row["energy_invalid"] and row["energy_j"] is None
    assert "backwards" in row["energy_note"]


def test_instant_power_disagreeing_with_the_counter_sets_mismatch(nv):
    nv.gpu.field_power_w = 230.0  # 15% above what the counter integrates
    trace, a, b = run_sampler(0.3)
    row = window_energy(trace, a + 20_000_000, b - 20_000_000, idle_power_w=None, mismatch_tolerance=0.05)
    assert row["energy_mismatch"]
    assert row["energy_integrated_j"] / row["energy_j"] == pytest.approx(1.15, rel=0.03)


def test_small_disagreement_is_not_a_mismatch(nv):
    nv.gpu.field_power_w = 206.0  # 3%
    trace, a, b = run_sampler(0.3)
    row = window_energy(trace, a + 20_000_000, b - 20_000_000, idle_power_w=None)
    assert not row["energy_mismatch"]


# ---------------------------------------------------------------------------- power source fallback


def test_field_186_unsupported_falls_back_to_power_usage(nv):
    nv.nvmlDeviceGetFieldValues.side_effect = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    trace, _, _ = run_sampler(0.1)
    assert np.allclose(trace.power_w, 180.0)  # the (lagging) nvmlDeviceGetPowerUsage reading
    assert "nvmlDeviceGetPowerUsage" in trace.note and "field 186 unavailable" in trace.note


def test_field_186_entry_not_supported_falls_back_too(nv):
    nv.gpu.field_return = pynvml.NVML_ERROR_NOT_SUPPORTED
    trace, _, _ = run_sampler(0.1)
    assert np.allclose(trace.power_w, 180.0)
    assert "power: nvmlDeviceGetPowerUsage" in trace.note


def test_field_186_failing_mid_run_uses_power_usage_for_those_samples(nv):
    trace, _, _ = run_sampler(0.15, during=lambda: setattr(nv.gpu, "field_return", pynvml.NVML_ERROR_NOT_SUPPORTED))
    assert trace.power_w[0] == pytest.approx(200.0) and trace.power_w[-1] == pytest.approx(180.0)
    assert "fell back to nvmlDeviceGetPowerUsage" in trace.note


def test_no_energy_counter_keeps_nan_and_energy_comes_from_integrated_power(nv):
    nv.nvmlDeviceGetTotalEnergyConsumption.side_effect = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    trace, a, b = run_sampler(0.25)
    assert np.all(np.isnan(trace.energy_mj))
    assert "energy: integrated power (no counter)" in trace.note
    row = window_energy(trace, a, b, idle_power_w=None)
    assert row["energy_j"] == pytest.approx(200.0 * (b - a) / 1e9, rel=0.02)


def test_unsupported_optional_metrics_are_nan_with_a_note(nv):
    nv.nvmlDeviceGetUtilizationRates.side_effect = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    nv.nvmlDeviceGetTemperature.side_effect = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    trace, _, _ = run_sampler(0.05)
    assert np.all(np.isnan(trace.util_pct)) and np.all(np.isnan(trace.temperature_c))
    assert np.all(trace.sm_clock_mhz == 1980)
    assert "nvmlDeviceGetUtilizationRates not supported" in trace.note


# ---------------------------------------------------------------------------- typed errors


def test_missing_pynvml_is_nvml_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(errors.NvmlUnavailable, match="not installed"):
        NvmlSampler(UUID).start()


def test_init_failure_is_nvml_unavailable(nv):
    nv.nvmlInit.side_effect = err(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    with pytest.raises(errors.NvmlUnavailable, match="nvmlInit failed"):
        NvmlSampler(UUID).start()


def test_unknown_uuid_is_nvml_not_found_naming_it(nv):
    nv.nvmlDeviceGetHandleByUUID.side_effect = err(pynvml.NVML_ERROR_NOT_FOUND)
    with pytest.raises(errors.NvmlNotFound, match=UUID):
        NvmlSampler(UUID).start()


def test_neither_counter_nor_power_is_not_supported(nv):
    nv.nvmlDeviceGetTotalEnergyConsumption.side_effect = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    nv.nvmlDeviceGetFieldValues.side_effect = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    nv.nvmlDeviceGetPowerUsage.side_effect = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    with pytest.raises(errors.NvmlNotSupported, match="neither the energy counter nor a power reading"):
        NvmlSampler(UUID).start()


def test_no_permission_at_start_is_typed(nv):
    nv.nvmlDeviceGetTotalEnergyConsumption.side_effect = err(pynvml.NVML_ERROR_NO_PERMISSION)
    with pytest.raises(errors.NvmlNoPermission, match="nvmlDeviceGetTotalEnergyConsumption failed"):
        NvmlSampler(UUID).start()


def test_gpu_lost_mid_run_is_raised_by_stop(nv):
    nv.gpu.lost_after_calls = 5
    s = NvmlSampler(UUID, INTERVAL_S)
    s.start()
    deadline = time.monotonic() + 30.0  # the thread's pace is the machine's: wait for the loss, not a fixed time
    while nv.gpu.energy_calls <= nv.gpu.lost_after_calls and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(errors.NvmlGpuLost, match="nvmlDeviceGetTotalEnergyConsumption"):
        s.stop()
    nv.nvmlShutdown.assert_called_once_with()


def test_unexpected_failure_in_the_thread_is_an_nvml_error(nv):
    s = NvmlSampler(UUID, INTERVAL_S)
    s.start()
    nv.nvmlDeviceGetClockInfo.side_effect = ZeroDivisionError("boom")
    time.sleep(0.05)
    with pytest.raises(errors.NvmlError, match="ZeroDivisionError: boom"):
        s.stop()


def test_shutdown_failure_does_not_lose_the_trace(nv):
    nv.nvmlShutdown.side_effect = err(pynvml.NVML_ERROR_UNKNOWN)
    trace, _, _ = run_sampler(0.03)
    assert len(trace) >= 2
