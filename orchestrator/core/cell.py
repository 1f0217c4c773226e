"""A cell: one measurement (its config, the engine that runs it, its id, a pre-launch status),
and the engine ``engine=auto`` chose for a GPU type. Sent over Ray inside a ``UnitSpec``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from orchestrator.config.root import CellConfig
from orchestrator.errors import Status


@dataclass(frozen=True)
class EngineChoice:
    """The engine that runs cells which asked for ``engine=auto``, and why; ``fallbacks``: the
    next usable engines, in order, for the cells this one refuses before launch (e.g. vllm's
    ``quantization=int8`` cells go to hf where a node of the GPU type has it)."""

    engine: str
    reason: str
    fallbacks: Tuple["EngineChoice", ...] = ()


@dataclass(frozen=True)
class Cell:
    """One measurement: its config, the engine that runs it, its id, and a pre-launch status
    (``unsupported`` / ``infeasible``) when it must not launch."""

    cell_id: str
    config: CellConfig
    engine: str
    engine_reason: str = ""
    status: Optional[Status] = None
    reason: str = ""

    def label(self) -> str:
        return self.config.label()
