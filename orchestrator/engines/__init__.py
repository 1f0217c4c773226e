"""Engine plug-ins: one module each, imported on the worker that runs them.

``engine_class(name, workload)`` maps a resolved engine name (never ``auto``) to its class.
"""
from __future__ import annotations

import importlib
from typing import Mapping

_ENGINES = {
    "simulated": "orchestrator.engines.simulated:SimulatedEngine",
    "hf": "orchestrator.engines.hf:HfEngine",
    "vllm_offline": "orchestrator.engines.vllm_offline:VllmOfflineEngine",
    "vllm_server": "orchestrator.engines.vllm_server:VllmServerEngine",
}


def engine_key(name: str, workload: Mapping) -> str:
    """vLLM runs static batches in-process (``LLM.generate``) and everything else through an
    OpenAI-compatible server driven by the streaming client."""
    if name == "vllm":
        return "vllm_offline" if workload["arrival"] == "offline" else "vllm_server"
    if name not in ("simulated", "hf"):
        raise ValueError(f"engine {name!r} must be resolved before it runs")
    return name


def engine_class(name: str, workload: Mapping):
    module, cls = _ENGINES[engine_key(name, workload)].split(":")
    return getattr(importlib.import_module(module), cls)
