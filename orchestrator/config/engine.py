"""``EngineConfig``: which engine runs a cell, and every registered engine's options block.

The schema is gathered from the registry: each engine plug-in declares ``options_key`` (the
block's name, e.g. ``vllm``) and ``options_schema`` (its dataclass), so adding an engine adds its
block here without editing this file. ``name`` is a registered engine or ``auto`` (vllm where a
GPU of the cell's type and vllm exist, else simulated; see ``engines.auto_candidates``). Only the
block of the engine that runs a cell is part of that cell's identity (``orchestrator.identity``).
"""
from __future__ import annotations

from dataclasses import field, fields, is_dataclass, make_dataclass
from typing import Dict

from omegaconf import MISSING

from orchestrator.config.fields import choice

AUTO = "auto"


def _option_blocks() -> Dict[str, type]:
    from orchestrator.engines import ENGINES

    blocks: Dict[str, type] = {}
    for cls in ENGINES:
        key, schema = cls.options_key, cls.options_schema
        if blocks.get(key, schema) is not schema:
            raise TypeError(f"engines disagree on the schema of engine.{key}")
        blocks[key] = schema
    return dict(sorted(blocks.items()))


def _validate(self) -> None:
    from orchestrator.engines import ENGINES

    choice("engine", self.name, (AUTO, *ENGINES.names()))
    for f in fields(self):
        block = getattr(self, f.name)
        if is_dataclass(block) and hasattr(block, "validate"):
            block.validate()


def _options(self, key: str):
    """The options block ``key`` (an engine's ``options_key``)."""
    return getattr(self, key)


OPTION_BLOCKS = _option_blocks()

EngineConfig = make_dataclass(
    "EngineConfig",
    [("name", str, field(default=MISSING))]
    + [(key, schema, field(default_factory=schema)) for key, schema in OPTION_BLOCKS.items()],
    namespace={
        "__doc__": "Which engine runs a cell (a registered name or ``auto``) and every engine's options.",
        "validate": _validate,
        "options": _options,
    },
)
EngineConfig.__module__ = __name__
