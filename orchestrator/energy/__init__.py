"""Energy sampler plug-ins (``nvml``: the GPU's counter and instant power; ``none``: nothing),
one module each, registered with ``@register_sampler("<name>")``; each imports its heavy
library (pynvml) inside its methods, on the worker. ``sampler_for`` picks a cell's sampler."""
from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.core.registry import Registry
from orchestrator.energy.base import MeasuredEngine, Sampler

if TYPE_CHECKING:
    from orchestrator.config.groups import SamplerConfig

SAMPLERS: Registry = Registry("sampler", __name__, "orchestrator.samplers", base=Sampler)
NO_SAMPLER = "none"
GPU_SAMPLER = "nvml"


def sampler_for(settings: "SamplerConfig", engine: MeasuredEngine) -> Sampler:
    """The sampler of a cell: the engine's own power model if it has one; else the configured
    sampler (``auto``: nvml when the engine runs on a GPU or names the GPUs it is charged with,
    none otherwise)."""
    modeled = engine.modeled_sampler()
    if modeled is not None:
        return modeled
    name = settings.name
    if name == "auto":
        name = GPU_SAMPLER if engine.uses_gpu or engine.energy_gpu_uuids() else NO_SAMPLER
    cls = SAMPLERS.variants(name)[0]
    return cls.for_engine(settings, engine)
