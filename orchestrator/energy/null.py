"""The ``none`` sampler: measures nothing; every energy column stays null and the run row says
``energy_source=none`` with the reason."""
from __future__ import annotations


from orchestrator.energy.base import PowerTrace


class NullSampler:
    """Same lifecycle as a real sampler: ``start()``, ``stop() -> PowerTrace``."""

    def __init__(self, reason: str = "no energy source on this worker"):
        self.reason = reason

    def start(self) -> None:
        pass

    def stop(self) -> PowerTrace:
        return PowerTrace(source="none", note=self.reason)

