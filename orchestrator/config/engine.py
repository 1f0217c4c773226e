"""``EngineConfig``: which engine runs a cell, and every engine's options block.

Static: the blocks are the dataclasses of ``config.engine_options``, one field per built-in
engine, each named after its engine. ``name`` is an engine's name or ``auto`` (vllm where a GPU
of the cell's type and vllm exist, else simulated; see ``engines.auto_candidates``); whether an
engine of that name is registered is checked by the driver (``driver.grid``), which knows the
registry. Only the block of the engine that runs a cell is part of that cell's identity
(``orchestrator.core.identity``). An engine from another distribution has no block here: its
``options`` are an empty ``EngineOptions`` (no knobs) until its block is added.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Tuple

from omegaconf import MISSING

from orchestrator.config.engine_options import (
    EndpointOptions,
    EngineOptions,
    HfOptions,
    SimulatedOptions,
    VllmOptions,
)

AUTO = "auto"


@dataclass
class EngineConfig:
    """Which engine runs a cell (an engine's name or ``auto``) and every built-in engine's options."""

    name: str = MISSING
    endpoint: EndpointOptions = field(default_factory=EndpointOptions)
    hf: HfOptions = field(default_factory=HfOptions)
    simulated: SimulatedOptions = field(default_factory=SimulatedOptions)
    vllm: VllmOptions = field(default_factory=VllmOptions)

    @classmethod
    def blocks(cls) -> Tuple[str, ...]:
        """The names of the options blocks (= the built-in engines' names), sorted."""
        return tuple(sorted(f.name for f in fields(cls) if f.name != "name"))

    def options(self, engine: str) -> EngineOptions:
        """The options block of ``engine`` (an empty ``EngineOptions`` for an engine without one)."""
        block = getattr(self, engine, None) if engine != "name" else None
        return block if isinstance(block, EngineOptions) else EngineOptions()

    def validate(self) -> None:
        """Every block's own checks (the engine's name is checked against the registry by the driver)."""
        for key in self.blocks():
            getattr(self, key).validate()
