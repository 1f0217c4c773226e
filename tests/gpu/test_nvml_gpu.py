"""The NVML sampler on the real card: found by UUID (the same card CUDA calls device 0), the
energy counter rises, instant power (field 186) is plausible and follows the load, >= 10 Hz,
and the counter and integrated instant power agree over a busy window."""
from __future__ import annotations

import time

import numpy as np
import pytest

from orchestrator.energy import SAMPLERS
from orchestrator.energy.base import counter_update_period_s, window_energy
from orchestrator.energy.nvml import NvmlSampler

pytestmark = pytest.mark.gpu


def busy(seconds: float) -> None:
    """Keep the GPU busy with fp16 matmuls for ``seconds``."""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()


def test_uuid_is_the_card_cuda_uses(gpu):
    import torch

    props = torch.cuda.get_device_properties(0)
    assert gpu.uuid == f"GPU-{props.uuid}", (gpu.uuid, props.uuid)
    name = torch.cuda.get_device_name(0)
    assert name in gpu.name or gpu.name in name, (name, gpu.name)


def test_sampler_reads_the_real_card(gpu, gpu_option):
    assert SAMPLERS.variants("nvml") == [NvmlSampler]  # what sampler=nvml / auto on a GPU engine runs
    s = NvmlSampler(gpu.uuid, interval_s=0.1)
    s.start()
    time.sleep(2.0)
    idle_end = time.monotonic_ns()
    busy(6.0)
    t1 = time.monotonic_ns()
    trace = s.stop()
    assert trace.source == "nvml" and trace.gpu_uuid == gpu.uuid and trace.gpu_name == gpu.name
    assert "field 186" in trace.note, trace.note  # instant power answers on H100/H200
    t = trace.t_ns
    assert np.all(np.diff(t) > 0)
    rate_hz = (len(t) - 1) / ((t[-1] - t[0]) / 1e9)
    assert rate_hz >= 9.5, trace.note
    e = trace.energy_mj
    assert np.all(np.diff(e) >= 0) and e[-1] > e[0]
    assert counter_update_period_s(trace) <= 0.25
    assert np.all((trace.power_w > 10) & (trace.power_w < 1200)), trace.power_w
    idle = trace.power_w[t <= idle_end]
    load = trace.power_w[t > idle_end + 2_000_000_000]
    assert load.mean() > idle.mean() + 50, (idle.mean(), load.mean())
    assert np.nanmax(trace.util_pct) >= 90 and np.nanmax(trace.memory_used_mib) > 100
    assert np.nanmax(trace.sm_clock_mhz) > 500 and 10 < np.nanmax(trace.temperature_c) < 100
    row = window_energy(trace, idle_end + 1_000_000_000, t1, idle_power_w=float(idle.mean()))
    print({k: row[k] for k in ("energy_j", "energy_integrated_j", "mean_power_w", "counter_update_period_s")})
    assert not row["energy_invalid"] and not row["short_window"]
    assert row["energy_integrated_j"] == pytest.approx(row["energy_j"], rel=0.10)
    assert row["net_energy_j"] > 0
