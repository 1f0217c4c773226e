"""The engine protocol: cheap to build and pickle anywhere, heavy only after ``start()``.

Lifecycle on a worker: ``start()`` once (timed, not measured) -> ``run(plan)`` once per cell
that shares the engine (each run returns a ``WindowRun`` on the monotonic clock, seconds) ->
``stop()`` (always, also after a failure). ``modeled_power()`` is only for engines with no
hardware to measure (the simulator); real engines leave energy to the sampler.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Dict, Mapping, Optional

from orchestrator.energy.base import PowerTrace
from orchestrator.metrics import WindowRun
from orchestrator.workload import WorkloadPlan


class Engine(ABC):
    name: str = "base"
    uses_gpu: bool = True

    def __init__(self, config: Mapping, max_batch_size: int):
        """``config``: the cell's canonical config; ``max_batch_size``: the largest batch of the
        cells that will share this engine."""
        self.config = config
        self.max_batch_size = int(max_batch_size)

    @abstractmethod
    def start(self) -> None:
        """Load the model; raise ``CellFailure`` for known failures (oom, startup_timeout...)."""

    @abstractmethod
    def run(self, plan: WorkloadPlan) -> WindowRun:
        """Drive the plan and report every request."""

    def stop(self) -> None:
        """Free everything ``start`` took (idempotent)."""

    def modeled_power(self) -> Optional[PowerTrace]:
        """A modeled power trace of the last ``run`` (simulator only)."""
        return None

    def modeled_power_source(self) -> bool:
        """True when the engine models power itself and no sampler should run."""
        return False

    def versions(self) -> Dict[str, str]:
        return {}

    def gpu_uuid(self) -> Optional[str]:
        """UUID of the GPU this engine runs on, if any (the sampler reads that one)."""
        return None
