"""The typed NVML errors (``orchestrator.errors``; ``gpuinfo.nvml_error`` maps pynvml codes to
them): every NVML failure code maps to one class, with a message that names the call; helpers
that look a GPU up by UUID raise them (autospec'd pynvml)."""
from __future__ import annotations

import pytest

pynvml = pytest.importorskip("pynvml")

from orchestrator import errors
from orchestrator.energy import gpuinfo
from tests.conftest import autospec_pynvml  # noqa: E402


@pytest.fixture
def nv():
    m = autospec_pynvml()
    return m


@pytest.mark.parametrize(
    "code, cls",
    [
        (pynvml.NVML_ERROR_NOT_FOUND, errors.NvmlNotFound),
        (pynvml.NVML_ERROR_NOT_SUPPORTED, errors.NvmlNotSupported),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, errors.NvmlNotSupported),
        (pynvml.NVML_ERROR_NO_PERMISSION, errors.NvmlNoPermission),
        (pynvml.NVML_ERROR_GPU_IS_LOST, errors.NvmlGpuLost),
        (pynvml.NVML_ERROR_UNINITIALIZED, errors.NvmlUnavailable),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, errors.NvmlUnavailable),
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, errors.NvmlUnavailable),
        (pynvml.NVML_ERROR_UNKNOWN, errors.NvmlError),
        (pynvml.NVML_ERROR_TIMEOUT, errors.NvmlError),
    ],
)
def test_each_code_maps_to_its_class(nv, code, cls):
    e = gpuinfo.nvml_error(nv, "nvmlDeviceGetPowerUsage", pynvml.NVMLError(code))
    assert type(e) is cls and isinstance(e, errors.NvmlError) and isinstance(e, RuntimeError)
    assert errors.classify(e) == (errors.Status.engine_error, False)  # an NVML failure is not retried
    assert str(e).startswith("nvmlDeviceGetPowerUsage failed: ") and f"code {code}" in str(e)


def test_handle_by_uuid(nv):
    nv.nvmlDeviceGetHandleByUUID.return_value = "h"
    assert gpuinfo.handle_by_uuid(nv, "GPU-x") == "h"
    nv.nvmlDeviceGetHandleByUUID.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
    with pytest.raises(errors.NvmlNotFound, match="GPU-x"):
        gpuinfo.handle_by_uuid(nv, "GPU-x")


def test_device_name_bytes_or_str(nv):
    nv.nvmlDeviceGetName.return_value = b"NVIDIA H100 80GB HBM3"
    assert gpuinfo.device_name(nv, "h") == "NVIDIA H100 80GB HBM3"
    nv.nvmlDeviceGetName.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
    with pytest.raises(errors.NvmlGpuLost, match="nvmlDeviceGetName"):
        gpuinfo.device_name(nv, "h")


def test_gpu_busy_names_the_processes_that_hold_the_memory(nv, monkeypatch):
    """A GPU whose memory another process holds past the wait: ``gpu_busy`` (re-run on resume),
    not vLLM's ``oom``; the first line says how much, for whom, and which processes hold it
    (NVML's list; the name from /proc when the PID is ours to see); an NVML that cannot list
    processes still gives the amount."""
    import os
    import types

    from orchestrator.engines.vllm import common as vllm_common

    held = types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=129_469 * 2**20)
    nv.nvmlDeviceGetComputeRunningProcesses.return_value = [held]
    monkeypatch.setattr(gpuinfo, "nvml", lambda: nv)
    monkeypatch.setattr(vllm_common, "memory_used_mib", lambda uuid: 130_083.9)
    gpu = types.SimpleNamespace(uuid="GPU-1", memory_total_mib=143_771.0)
    with pytest.raises(errors.CellFailure) as info:
        vllm_common.wait_for_gpu_memory(gpu, 0.9, timeout_s=0.6)
    assert errors.classify(info.value) == (errors.Status.gpu_busy, False)
    first = str(info.value).splitlines()[0]
    assert "GPU-1 has 130,084 MiB in use" in first and "under 13,865 MiB" in first
    assert f"pid {os.getpid()} python" in first or f"pid {os.getpid()} pytest" in first
    assert "129,469 MiB" in first
    nv.nvmlDeviceGetComputeRunningProcesses.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    with pytest.raises(errors.CellFailure, match="NVML lists no process"):
        vllm_common.wait_for_gpu_memory(gpu, 0.9, timeout_s=0.0)
    monkeypatch.setattr(vllm_common, "memory_used_mib", lambda uuid: 600.0)  # free: no error, what was seen
    seen = vllm_common.wait_for_gpu_memory(gpu, 0.9, timeout_s=0.0)
    assert seen["gpu_memory_used_before_start_mib"] == 600.0 and seen["gpu_memory_wait_s"] < 1.0
