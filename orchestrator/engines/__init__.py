"""Engine plug-ins: one module (or sub-package) each, marked with ``@register_engine("<name>")``.

An engine declares what it can run as class attributes (``engines.base.Engine``): quantizations,
workload kinds, whether cells may share one start, whether it needs a GPU,
and whether ``engine=auto`` may pick it. Everything else — the config schema, pre-launch checks,
placement, identity — reads those attributes; nothing lists engines by name. Importing this
package imports no engine; the registry imports them (light modules: vllm, torch and
transformers are imported inside their methods, on the worker).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional

from orchestrator.core.registry import Registry
from orchestrator.engines.base import Engine

if TYPE_CHECKING:
    from orchestrator.config.groups import WorkloadKind
    from orchestrator.core.cell import Cell

ENGINES: Registry = Registry("engine", __name__, "orchestrator.engines", base=Engine)


def engine_for(name: str, kind: "WorkloadKind") -> Optional[type["Engine"]]:
    """The variant of engine ``name`` that runs ``kind`` workloads, or None when none does."""
    for cls in ENGINES.variants(name):
        if kind in cls.workload_kinds:
            return cls
    return None


def cell_engine(cell: "Cell") -> Optional[type["Engine"]]:
    """The engine variant that runs ``cell``'s workload kind (None: none does)."""
    return engine_for(cell.engine, cell.config.workload.kind)


def launched_engine(cell: "Cell") -> type["Engine"]:
    """The engine variant that runs a launched ``cell`` (the grid gives every cell no variant runs
    its pre-launch status, so it never launches); ``LookupError`` where none does."""
    cls = cell_engine(cell)
    if cls is None:
        raise LookupError(f"engine {cell.engine} runs no {cell.config.workload.kind.value} workload")
    return cls


def engine_class(name: str, kind: "WorkloadKind") -> type["Engine"]:
    """The class that runs ``kind`` workloads for engine ``name``, else its first variant (a cell
    whose workload the engine cannot run still has one identity: its pre-launch check refuses it)."""
    return engine_for(name, kind) or ENGINES.variants(name)[0]


def runs_kinds(name: str) -> List["WorkloadKind"]:
    """Every workload kind some variant of ``name`` runs."""
    return sorted({k for cls in ENGINES.variants(name) for k in cls.workload_kinds}, key=lambda k: k.value)


def auto_candidates() -> List[type["Engine"]]:
    """Engines ``engine=auto`` may pick (one class per name: variants share their needs), most
    preferred first (``auto_rank``)."""
    first: Dict[str, type[Engine]] = {}
    for cls in ENGINES:
        if cls.auto_rank is not None:
            first.setdefault(cls.name, cls)
    return sorted(first.values(), key=lambda cls: (cls.auto_rank, cls.name))
