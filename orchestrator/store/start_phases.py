"""One engine start's phases as the store keeps them: the ``StartPhases`` record the vLLM engines
write into a run's extra (``engine_extra``) under ``EXTRA_KEY`` (``schema.START_PHASES``), read
back by ``start_phases_of``. What each phase holds, and how it is read from vLLM's log:
``orchestrator.engines.vllm.start_phases``."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Dict, Mapping, Optional, Union

from orchestrator.store.schema import START_PHASES as EXTRA_KEY


@dataclass(frozen=True)
class StartPhases:
    """One vLLM start's phases (see the module doc); seconds, GiB; None where unknown."""

    launch_s: Optional[float] = None
    frontend_s: Optional[float] = None
    core_boot_s: Optional[float] = None
    model_setup_s: Optional[float] = None
    weights_s: Optional[float] = None
    init_engine_s: Optional[float] = None
    compile_s: Optional[float] = None
    compile_cached: Optional[bool] = None
    profiling_s: Optional[float] = None
    graph_capture_s: Optional[float] = None
    warmup_s: Optional[float] = None
    init_other_s: Optional[float] = None
    ready_s: Optional[float] = None
    total_s: Optional[float] = None
    weights_gib: Optional[float] = None
    kv_cache_gib: Optional[float] = None
    graph_memory_gib: Optional[float] = None
    vllm_version: Optional[str] = None
    from_spare: Optional[bool] = None  # a server launched in a spare process, its imports done (engines.vllm.spare)

    def as_extra(self) -> Dict:
        return asdict(self)


def start_phases_of(extra: Union[str, Mapping, None]) -> Optional[StartPhases]:
    """The phases an engine run's extra holds (a runs row's ``engine_extra``, JSON or parsed),
    or None (not a vLLM start, or a row from before phases were recorded)."""
    if isinstance(extra, str):
        try:
            extra = json.loads(extra or "{}")
        except ValueError:
            return None
    value = (extra or {}).get(EXTRA_KEY) if isinstance(extra, Mapping) else None
    if not isinstance(value, Mapping):
        return None
    names = {f.name for f in fields(StartPhases)}
    return StartPhases(**{k: v for k, v in value.items() if k in names})
