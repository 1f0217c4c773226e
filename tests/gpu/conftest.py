"""GPU-machine fixtures (``pytest -m gpu tests/gpu``): the card NVML sees, its config option, and
vLLM. A missing driver or vLLM fails these tests with the fix — they are meant to run there, not
to be skipped forever."""
from __future__ import annotations

import pytest

GPU_OPTIONS = (("H200", "h200"), ("H100", "h100"), ("A100", "a100"), ("A800", "a800"), ("T4", "t4"))


@pytest.fixture(scope="session")
def gpu():
    """Identity of CUDA device 0 of this process (NVML, by UUID)."""
    from orchestrator.energy.gpuinfo import assigned_gpu
    from orchestrator.errors import NvmlError

    try:
        return assigned_gpu()
    except NvmlError as exc:
        pytest.fail(f"no NVIDIA GPU/driver here ({exc}); run tests/gpu on the GPU machine")


@pytest.fixture(scope="session")
def gpu_option(gpu) -> str:
    """The ``gpu=`` config option of this card."""
    for needle, option in GPU_OPTIONS:
        if needle in gpu.name:
            return option
    pytest.fail(f"no conf/gpu option for {gpu.name}")


@pytest.fixture(scope="session")
def vllm_version() -> str:
    try:
        import vllm
    except ImportError as exc:
        pytest.fail(f"vllm does not import ({exc}): install the bundle (../shared/gpu/README.md) and "
                    "export PYTHONPATH=/root/site:$PWD")
    return vllm.__version__
