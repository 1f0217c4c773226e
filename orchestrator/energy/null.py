"""The ``none`` sampler: measures nothing; every energy column stays null and the run row says
``energy_source=none`` with the reason."""
from __future__ import annotations

from orchestrator.energy.base import PowerTrace, Sampler, register_sampler


@register_sampler("none")
class NullSampler(Sampler):
    """Same lifecycle as a real sampler: ``start()``, ``stop() -> PowerTrace(source='none')``."""

    def __init__(self, reason: str = "no energy source on this worker"):
        self.reason = reason

    @classmethod
    def for_engine(cls, settings, engine) -> "NullSampler":
        if settings.name == "none":
            return cls("sampler=none")
        return cls(engine.no_energy_reason())

    def start(self) -> None:
        pass

    def stop(self) -> PowerTrace:
        return PowerTrace(source="none", note=self.reason)
