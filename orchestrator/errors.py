"""Typed errors and the statuses a cell can end with (docs/architecture.md, "Failure is data").

Every error the package raises derives ``OrchestratorError`` (catch it to catch ours, and only
ours); each also keeps the builtin base callers expect (``ValueError`` for bad input,
``RuntimeError`` for failures). Three families, each classified with ``isinstance`` (never by
class-name strings):

- ``ConfigError``: bad user input, found on the driver before any Ray task starts.
- ``CellFailure``: a cell ended in a known failure ``Status`` (oom, wrong_gpu, ...), raised on a
  worker and turned into a status row, never retried. ``EngineError``: an engine failed without
  a known status (``engine_error``, worth a retry); both lead with the line that explains it.
- ``NvmlError`` and its subclasses: an NVML call failed (zeus-style typed errors; ``pynvml``
  codes are mapped to them in ``gpuinfo.nvml_error``).
"""
from __future__ import annotations

from enum import Enum
from typing import Tuple


class Status(str, Enum):
    """How a cell ended. Pre-launch: unsupported, infeasible. On a worker: the rest."""

    ok = "ok"
    unsupported = "unsupported"  # quantization x GPU, or an engine that cannot run the cell
    infeasible = "infeasible"  # the VRAM calculator says it does not fit
    oom = "oom"
    kv_cache_too_small = "kv_cache_too_small"
    startup_timeout = "startup_timeout"
    engine_error = "engine_error"
    wrong_gpu = "wrong_gpu"  # the task landed on another GPU type
    gpu_busy = "gpu_busy"  # other processes held the memory the engine needs (re-run on resume)
    worker_lost = "worker_lost"
    timeout = "timeout"
    unschedulable = "unschedulable"  # no node of the cluster can run it (pending past the timeout)


STATUSES = tuple(s.value for s in Status)


class OrchestratorError(Exception):
    """The base of the package's own errors."""


class ConfigError(OrchestratorError, ValueError):
    """Bad user input, found before any Ray task starts. The message is one line that names
    the key and what is allowed."""


class CellFailure(OrchestratorError, RuntimeError):
    """A cell ended in a known failure status (oom, wrong_gpu, ...); ``status`` says which.
    Raised inside a worker and turned into a status row, never retried."""

    def __init__(self, status: "Status | str", message: str):
        super().__init__(message)
        self.status = Status(status)


class EngineError(OrchestratorError, RuntimeError):
    """An engine failed in a way no known status covers (``engine_error``, worth a retry). Its
    message's first line is the line of the engine's output that explains the failure."""


def error_text(exc: BaseException) -> str:
    """The ``error`` column of a failed cell. ``CellFailure`` and ``EngineError`` messages lead
    with the line that explains the failure, so they stand alone; any other exception is
    ``Type: message`` (its first line is the exception line Python would print last)."""
    if isinstance(exc, (CellFailure, EngineError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def first_line(text: str) -> str:
    """The line that explains a failure: the first non-blank line of an ``error`` text."""
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no reason recorded)"


# --------------------------------------------------------------------------- NVML errors


class NvmlError(OrchestratorError, RuntimeError):
    """An NVML call failed; the message names the call and NVML's error string."""


class NvmlUnavailable(NvmlError):
    """pynvml is not installed or NVML cannot initialise (no NVIDIA driver)."""


class NvmlNotFound(NvmlError):
    """No GPU with that UUID / index (it is not on this host, or it was removed)."""


class NvmlNotSupported(NvmlError):
    """This GPU or driver does not answer that query (e.g. the energy counter before Volta)."""


class NvmlNoPermission(NvmlError):
    """NVML refused the query for lack of permission."""


class NvmlGpuLost(NvmlError):
    """The GPU fell off the bus or stopped answering (NVML_ERROR_GPU_IS_LOST): its readings
    from then on are meaningless."""


# --------------------------------------------------------------------------- classification

_OOM = ("out of memory", "outofmemoryerror", "cuda error: out of memory", "cublas_status_alloc_failed")
_KV = ("kv cache", "max_model_len", "num_gpu_blocks", "no available memory for the cache blocks")
_KV_SHORT = ("too small", "larger than", "not enough", "no available memory", "insufficient")


def classify(exc: BaseException) -> Tuple[Status, bool]:
    """(status, retryable) of an exception raised while a cell ran.

    Known failures (out of memory, KV cache too small, timeouts, ``CellFailure``) are
    deterministic and not retried; an NVML error will not answer better on a retry; anything
    else is an ``engine_error`` worth one more try."""
    if isinstance(exc, CellFailure):
        return exc.status, False
    if isinstance(exc, EngineError):  # the engine's log matched no known status
        return Status.engine_error, True
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(k in text for k in _OOM):
        return Status.oom, False
    if any(k in text for k in _KV) and any(k in text for k in _KV_SHORT):
        return Status.kv_cache_too_small, False
    if isinstance(exc, TimeoutError):
        return Status.timeout, False
    if isinstance(exc, NvmlError):
        return Status.engine_error, False
    return Status.engine_error, True
