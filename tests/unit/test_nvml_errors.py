"""The typed NVML errors (``orchestrator.errors``; ``gpuinfo.nvml_error`` maps pynvml codes to
them): every NVML failure code maps to one class, with a message that names the call; helpers
that look a GPU up by UUID raise them (autospec'd pynvml)."""
from __future__ import annotations

from unittest.mock import create_autospec

import pytest

pynvml = pytest.importorskip("pynvml")

from orchestrator import errors, gpuinfo


@pytest.fixture
def nv():
    m = create_autospec(pynvml)
    m.NVMLError = pynvml.NVMLError
    for name in dir(pynvml):
        if name.startswith("NVML_"):
            setattr(m, name, getattr(pynvml, name))
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
