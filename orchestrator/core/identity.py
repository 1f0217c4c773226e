"""A cell's identity: the fields that define its measurement, and the ``cell_id`` that hashes them.

Identity = the model, the effective quantization, the GPU, the workload, the batch size, the
repeat index, the tensor-parallel size where it is not 1 (a one-GPU cell's id predates it), the
**resolved** engine's name and its own options block, and the sampler's
settings when the engine is measured by the configured sampler (an engine that models its own
power ignores them) — each group without the fields it declares ``setting(...)`` (timeouts, cache
directories, pacing) and those it declares ``added(...)`` while at their default (an option added
after cells were stored). So raising a timeout re-runs nothing, another engine's knobs never change a
cell's id, and a result from another engine (``engine=auto`` resolved to the simulator on a
laptop) never satisfies a cell that runs vLLM.

``cell_id`` = the first 16 hex digits of the SHA-256 of the identity's canonical JSON (sorted
keys): the same cell has the same id in any sweep, on any machine.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Dict, Optional

from orchestrator.config.fields import ADDED, identity_of

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig


class IdentityCache:
    """Identity dicts of group objects, by object (a grid shares group objects between cells)."""

    def __init__(self):
        self._by_id: Dict[int, tuple] = {}

    def of(self, obj):
        hit = self._by_id.get(id(obj))
        if hit is None or hit[0] is not obj:
            hit = (obj, identity_of(obj))
            self._by_id[id(obj)] = hit
        return hit[1]


def cell_identity(cfg: "CellConfig", engine: str, cache: Optional[IdentityCache] = None) -> Dict:
    """The identity of ``cfg`` run by the engine named ``engine`` (see module doc); its options
    block is ``cfg.engine.options(engine)``, which says whether it models its own power."""
    cache = cache or IdentityCache()
    options = cfg.engine.options(engine)
    ident = {
        "model": cache.of(cfg.model),
        "quantization": cache.of(cfg.quantization),
        "gpu": cache.of(cfg.gpu),
        "workload": cache.of(cfg.workload),
        "engine": {"name": engine, engine: cache.of(options)},
        "batch_size": int(cfg.batch_size),
        "repeat": int(cfg.repeat),
    }
    for f in dataclasses.fields(cfg):  # axes added after cells were stored (``added``): only when not at their default
        if f.metadata.get(ADDED) and getattr(cfg, f.name) != f.default:
            ident[f.name] = getattr(cfg, f.name)
    if not options.models_power:
        ident["sampler"] = cache.of(cfg.sampler)
    return ident


def series_identity(cfg: "CellConfig", engine: str, cache: Optional[IdentityCache] = None) -> Dict:
    """The identity of ``cfg`` without its batch size and repeat: the cells that share it form one
    series of batch sizes in a report (an option that defines nothing never splits a series)."""
    ident = cell_identity(cfg, engine, cache)
    del ident["batch_size"], ident["repeat"]
    return ident


def digest(identity: Dict) -> str:
    """The 16-hex-digit SHA-256 of an identity's canonical JSON."""
    blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
