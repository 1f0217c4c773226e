"""Which physical GPU did Ray give this worker? (NVML handle found by UUID.)

Ray pins a GPU by setting ``CUDA_VISIBLE_DEVICES`` in the worker; NVML ignores that variable and
numbers devices in PCI-bus order. GPU tasks run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (set by the
dispatcher), so an integer entry is the NVML index; a ``GPU-...`` entry is a UUID already. From
then on everything (sampler, checks) uses the UUID.

Imports ``pynvml`` (package nvidia-ml-py) inside functions only.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from orchestrator.errors import (
    CellFailure,
    NvmlError,
    NvmlGpuLost,
    NvmlNoPermission,
    NvmlNotFound,
    NvmlNotSupported,
    NvmlUnavailable,
)


@dataclass(frozen=True)
class GpuIdentity:
    name: str
    uuid: str
    nvml_index: int
    memory_total_mib: float
    driver_version: str
    cuda_driver_version: str


def nvml():
    """``pynvml`` after ``nvmlInit`` (idempotent), or NvmlUnavailable."""
    try:
        import pynvml
    except ImportError as exc:
        raise NvmlUnavailable("pynvml (nvidia-ml-py) is not installed") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"nvmlInit failed: {exc}") from exc
    return pynvml


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def visible_device(env: Optional[dict] = None) -> Optional[str]:
    """First entry of CUDA_VISIBLE_DEVICES (what CUDA calls device 0), or None if unset/empty."""
    return visible_devices(env)[0]


def handle_for(pynvml, device: Optional[str]):
    """NVML handle of a CUDA_VISIBLE_DEVICES entry (UUID or PCI-ordered index)."""
    try:
        if device is None:
            return pynvml.nvmlDeviceGetHandleByIndex(0)
        if device.startswith(("GPU-", "MIG-")):
            return pynvml.nvmlDeviceGetHandleByUUID(device)
        return pynvml.nvmlDeviceGetHandleByIndex(int(device))
    except pynvml.NVMLError as exc:
        raise NvmlError(f"no NVML device for CUDA_VISIBLE_DEVICES entry {device!r}: {exc}") from exc


def visible_devices(env: Optional[dict] = None) -> List[Optional[str]]:
    """Every entry of CUDA_VISIBLE_DEVICES, in CUDA's order ([None]: unset or empty, device 0)."""
    value = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    entries = [v.strip() for v in (value or "").split(",") if v.strip()]
    return list(entries) or [None]


def assigned_gpus(count: int, env: Optional[dict] = None) -> List[GpuIdentity]:
    """Identities of the first ``count`` GPUs this process sees (CUDA devices 0..count-1);
    ``CellFailure('wrong_gpu')`` when it sees fewer."""
    devices = visible_devices(env)
    if count > 1 and len(devices) < count:
        raise CellFailure("wrong_gpu", f"cell spans {count} GPUs, this process sees {len(devices)} "
                                       f"(CUDA_VISIBLE_DEVICES={','.join(d or '' for d in devices)})")
    return [_identity(d) for d in devices[:count]]


def assigned_gpu(env: Optional[dict] = None) -> GpuIdentity:
    """Identity of the GPU this process sees as CUDA device 0."""
    return _identity(visible_device(env))


def _identity(device: Optional[str]) -> GpuIdentity:
    pynvml = nvml()
    h = handle_for(pynvml, device)
    try:
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        return GpuIdentity(
            name=_s(pynvml.nvmlDeviceGetName(h)),
            uuid=_s(pynvml.nvmlDeviceGetUUID(h)),
            nvml_index=int(pynvml.nvmlDeviceGetIndex(h)),
            memory_total_mib=mem.total / 2**20,
            driver_version=_s(pynvml.nvmlSystemGetDriverVersion()),
            cuda_driver_version=f"{cuda // 1000}.{(cuda % 1000) // 10}",
        )
    except pynvml.NVMLError as exc:
        raise NvmlError(f"reading the assigned GPU failed: {exc}") from exc


def check_gpu_type(expected_name_contains: str, env: Optional[dict] = None) -> GpuIdentity:
    """The assigned GPU, or ``CellFailure('wrong_gpu')`` when its NVML name lacks the substring."""
    return check_gpu_types(expected_name_contains, 1, env)[0]


def check_gpu_types(expected_name_contains: str, count: int, env: Optional[dict] = None) -> List[GpuIdentity]:
    """The ``count`` assigned GPUs, or ``CellFailure('wrong_gpu')`` when one's NVML name lacks the
    substring (or fewer are visible)."""
    gpus = assigned_gpus(count, env)
    for gpu in gpus:
        if expected_name_contains.lower() not in gpu.name.lower():
            raise CellFailure(
                "wrong_gpu", f"cell wants a GPU named *{expected_name_contains}*, Ray gave {gpu.name} ({gpu.uuid})"
            )
    return gpus


def local_gpu_uuids() -> List[str]:
    """The NVML UUIDs of every GPU of this machine ([] where NVML is unavailable)."""
    try:
        pynvml = nvml()
    except NvmlUnavailable:
        return []
    try:
        return [_s(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)))
                for i in range(int(pynvml.nvmlDeviceGetCount()))]
    except pynvml.NVMLError:
        return []


def memory_used_mib(uuid: str) -> float:
    """Memory in use on the GPU with this UUID (all processes), MiB."""
    pynvml = nvml()
    try:
        h = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        return pynvml.nvmlDeviceGetMemoryInfo(h).used / 2**20
    except pynvml.NVMLError as exc:
        raise NvmlError(f"nvmlDeviceGetMemoryInfo({uuid}) failed: {exc}") from exc


def gpu_processes(uuid: str) -> List[Tuple[int, str, float]]:
    """(pid, name, MiB) of the compute processes NVML sees on the GPU with this UUID (the name
    from ``/proc/<pid>/comm`` when the PID is in this namespace, else ``?``; MiB NaN when NVML
    does not say); [] when NVML cannot list them."""
    pynvml = nvml()
    try:
        running = pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByUUID(uuid))
    except pynvml.NVMLError:
        return []
    out = []
    for p in running:
        try:
            with open(f"/proc/{p.pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            name = "?"
        used = p.usedGpuMemory
        out.append((int(p.pid), name, float("nan") if used is None else used / 2**20))
    return out


# --------------------------------------------------------------------------- typed NVML errors

_TYPED_ERRORS = {
    "NVML_ERROR_NOT_FOUND": NvmlNotFound,
    "NVML_ERROR_NOT_SUPPORTED": NvmlNotSupported,
    "NVML_ERROR_FUNCTION_NOT_FOUND": NvmlNotSupported,
    "NVML_ERROR_NO_PERMISSION": NvmlNoPermission,
    "NVML_ERROR_GPU_IS_LOST": NvmlGpuLost,
    "NVML_ERROR_UNINITIALIZED": NvmlUnavailable,
    "NVML_ERROR_DRIVER_NOT_LOADED": NvmlUnavailable,
    "NVML_ERROR_LIBRARY_NOT_FOUND": NvmlUnavailable,
}


def nvml_error(pynvml, call: str, exc: BaseException) -> NvmlError:
    """The typed error (see the classes above) for a ``pynvml.NVMLError`` raised by ``call``;
    the message names the call, NVML's error string and its code."""
    code = getattr(exc, "value", None)
    cls = NvmlError
    for name, typed in _TYPED_ERRORS.items():
        if code is not None and code == getattr(pynvml, name, object()):
            cls = typed
            break
    return cls(f"{call} failed: {exc} (NVML error code {code})")


def handle_by_uuid(pynvml, uuid: str):
    """NVML handle of the GPU with this UUID (``GPU-...``); ``NvmlNotFound`` if none has it."""
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(uuid)
    except pynvml.NVMLError as exc:
        raise nvml_error(pynvml, f"nvmlDeviceGetHandleByUUID({uuid!r})", exc) from exc


def device_name(pynvml, handle) -> str:
    """``nvmlDeviceGetName`` as str."""
    try:
        return _s(pynvml.nvmlDeviceGetName(handle))
    except pynvml.NVMLError as exc:
        raise nvml_error(pynvml, "nvmlDeviceGetName", exc) from exc
