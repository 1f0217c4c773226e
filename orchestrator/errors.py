"""Typed errors and the statuses a cell can end with (DESIGN §7)."""
from __future__ import annotations

STATUSES = (
    "ok",
    "unsupported",
    "infeasible",
    "oom",
    "kv_cache_too_small",
    "startup_timeout",
    "engine_error",
    "wrong_gpu",
    "worker_lost",
    "timeout",
)


class ConfigError(ValueError):
    """Bad user input, found before any Ray task starts. The message is one line that names
    the key and what is allowed."""


class CellFailure(RuntimeError):
    """A cell ended in a known failure status (oom, wrong_gpu, ...); ``status`` says which.
    Raised inside a worker and turned into a status row, never retried."""

    def __init__(self, status: str, message: str):
        assert status in STATUSES, status
        super().__init__(message)
        self.status = status

_OOM = ("out of memory", "outofmemoryerror", "cuda error: out of memory", "cublas_status_alloc_failed")
_KV = ("kv cache", "max_model_len", "num_gpu_blocks", "no available memory for the cache blocks")


def classify(exc: BaseException) -> tuple:
    """(status, retryable) of an exception raised while a cell ran.

    Known failures (out of memory, KV cache too small, timeouts, ``CellFailure``) are
    deterministic and not retried; anything else is an ``engine_error`` worth one more try."""
    if isinstance(exc, CellFailure):
        return exc.status, False
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(k in text for k in _OOM):
        return "oom", False
    if any(k in text for k in _KV) and ("too small" in text or "larger than" in text or "not enough" in text
                                        or "no available memory" in text or "insufficient" in text):
        return "kv_cache_too_small", False
    if isinstance(exc, TimeoutError):
        return "timeout", False
    if any(type(c).__name__.startswith("Nvml") for c in type(exc).__mro__):
        return "engine_error", False  # the GPU's NVML will not answer better on a retry
    return "engine_error", True
