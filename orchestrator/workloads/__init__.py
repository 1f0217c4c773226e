"""Workload sources other than the length distributions (``workload.source``): one module per
source, each registered with ``register_source`` and configured by its own typed block
(``config.workload_sources``). ``plan_for(cfg, cell_id)`` builds a cell's ``WorkloadPlan``: with
the source its workload names, or, for synthetic traffic, ``client.workload.build_plan`` with
prompts keyed by the cell's identity. Modules are imported on first use."""
from __future__ import annotations

import hashlib
from importlib import import_module
from typing import TYPE_CHECKING, Callable, Dict

from orchestrator.config.workload_sources import Source

if TYPE_CHECKING:
    from orchestrator.client.workload import WorkloadPlan
    from orchestrator.config.root import CellConfig
    from orchestrator.workloads.context import SourceContext

Builder = Callable[["SourceContext"], "WorkloadPlan"]
_BUILDERS: Dict[Source, Builder] = {}
_MODULES = {Source.dataset: "dataset", Source.trace: "trace", Source.sessions: "sessions"}


def register_source(source: Source) -> Callable[[Builder], Builder]:
    """Decorator: ``fn(ctx) -> WorkloadPlan`` builds the plans of ``source``."""
    def deco(fn: Builder) -> Builder:
        _BUILDERS[source] = fn
        return fn

    return deco


def plan_for(cfg: "CellConfig", cell_id: str) -> "WorkloadPlan":
    """The plan of one cell: synthetic prompts keyed by its identity (no two cells send the same
    prompt), another source's keyed by the workload's seed; its drain limit (``drain_limit_s``)."""
    from orchestrator.client.workload import build_plan, drain_limit_s
    from orchestrator.workloads.context import SourceContext

    source = Source(cfg.workload.source)
    if source is Source.synthetic:
        key = int(hashlib.sha256(cell_id.encode()).hexdigest()[:15], 16)
        return build_plan(cfg.workload, cfg.batch_size, cfg.repeat, prompt_key=key, drain_timeout_s=drain_limit_s(cfg))
    import_module(f"orchestrator.workloads.{_MODULES[source]}")
    return _BUILDERS[source](SourceContext.of(cfg, drain_limit_s(cfg)))
