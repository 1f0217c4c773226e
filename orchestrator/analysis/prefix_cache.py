"""What the prefix cache saves: ok cells paired by prefix caching off and on.

``caching_of(config, engine)``: whether the engine that ran a cell had its prefix cache on
(``engine.vllm.enable_prefix_caching``, ``engine.simulated.enable_prefix_caching``), None for an
engine without that option or a row without a (readable) stored config; ``caching_flags`` gives
it for every row of a runs frame (column ``PREFIX_CACHING``).

``cache_savings(ok, configs)``: one ``CacheSaving`` per pair of ok cells whose stored configs are
identical apart from that option — the sweep varied prefix caching and nothing else between them.
Configs are compared by what defines a measurement (``core.identity.cell_identity``: the engine
that ran the cell and its own options block, without ``setting`` fields such as timeouts), so
another engine's block, which a stored config also holds, never keeps a pair apart. Two cells of
one side (one measurement stored twice, e.g. under an older schema's cell id): the first of the
rows. Each side's numbers are its runs-table values (gross J per request and per 1k output /
prompt tokens, NaN where the cell has no valid energy; TTFT p50 / p99); the hit rate is the on
cell's ``prefix_cache_hit_rate`` (cached ÷ prompt tokens of its measured ok requests).
``series`` names the pair like a series label, without the caching option: what tells the pairs
of one model/quantization/GPU and workload apart (e.g. ``[rate_rps=0.5]``).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from orchestrator.analysis.dataset import pct_change
from orchestrator.analysis.series_labels import flat_identity, series_labels
from orchestrator.config.engine_options import SimulatedOptions, VllmOptions
from orchestrator.config.root import CellConfig
from orchestrator.core.identity import cell_identity, digest, series_identity
from orchestrator.store.schema import (
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_1K_PROMPT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    OFFERED_RATE_RPS,
    PREFIX_CACHE_HIT_RATE,
    TTFT_P50_MS,
    TTFT_P99_MS,
    WORKLOAD_SOURCE,
)

PREFIX_CACHING = "prefix_caching"
"""Derived column: the cell's engine had its prefix cache on (True), off (False), unknown (None)."""
CACHING_BLOCKS = (VllmOptions, SimulatedOptions)
"""The engines' options blocks that have ``enable_prefix_caching``."""


def caching_of(config: CellConfig | None, engine: str) -> bool | None:
    """See the module doc."""
    if config is None:
        return None
    options = config.engine.options(engine)
    return bool(options.enable_prefix_caching) if isinstance(options, CACHING_BLOCKS) else None


def _config(configs: Mapping[str, CellConfig], cell_id: str) -> CellConfig | None:
    try:
        return configs.get(cell_id)
    except (ValueError, TypeError):  # a stored config this code no longer parses
        return None


def caching_flags(runs: pd.DataFrame, configs: Mapping[str, CellConfig]) -> pd.Series:
    """``caching_of`` each row of ``runs`` (aligned with it; object dtype: True, False or None)."""
    return pd.Series([caching_of(_config(configs, cid), str(e)) for cid, e in zip(runs["cell_id"], runs["engine"])],
                     index=runs.index, dtype=object)


def _pair_key(config: CellConfig, engine: str) -> str:
    """The cell's identity with the engine's caching option off, as canonical JSON."""
    off = copy.deepcopy(config)
    options = off.engine.options(engine)
    if isinstance(options, CACHING_BLOCKS):
        options.enable_prefix_caching = False
    return json.dumps(cell_identity(off, engine), sort_keys=True, default=str)


@dataclass(frozen=True)
class CacheSide:
    """One cell of a pair: its runs-table numbers."""

    cell_id: str
    energy_per_request_j: float
    energy_per_1k_output_tokens_j: float
    energy_per_1k_prompt_tokens_j: float
    ttft_p50_ms: float
    ttft_p99_ms: float


@dataclass(frozen=True)
class CacheSaving:
    """A pair of cells identical but for prefix caching (see the module doc)."""

    workload: str
    workload_source: str | None
    series: str
    engine: str
    batch_size: int
    repeat: int
    offered_rate_rps: float
    hit_rate: float  # the on cell's prefix_cache_hit_rate (0..1; NaN: not reported)
    off: CacheSide
    on: CacheSide
    simulated: bool

    @property
    def energy_per_request_change_pct(self) -> float:
        return float(pct_change(self.on.energy_per_request_j, self.off.energy_per_request_j))


def _side(r: pd.Series) -> CacheSide:
    energy = bool(r["energy_available"])

    def j(column: str) -> float:
        return float(r[column]) if energy and pd.notna(r[column]) else float("nan")

    return CacheSide(str(r["cell_id"]), j(ENERGY_PER_REQUEST_J), j(ENERGY_PER_1K_OUTPUT_TOKENS_J),
                     j(ENERGY_PER_1K_PROMPT_TOKENS_J), float(r[TTFT_P50_MS]), float(r[TTFT_P99_MS]))


def cache_pairs(ok: pd.DataFrame, configs: Mapping[str, CellConfig]) -> list[tuple[pd.Series, pd.Series]]:
    """(off row, on row) of each pair of ``ok`` (see the module doc; of two cells of one side, the
    first in ``ok``'s order)."""
    flags = caching_flags(ok, configs)
    if not (flags.eq(True).any() and flags.eq(False).any()):  # nothing to pair
        return []
    sides: dict[str, dict[bool, pd.Series]] = {}
    for (_, r), on in zip(ok.iterrows(), flags):
        config = _config(configs, str(r["cell_id"]))
        if config is not None and on is not None:
            sides.setdefault(_pair_key(config, str(r["engine"])), {}).setdefault(bool(on), r)
    return [(s[False], s[True]) for s in sides.values() if False in s and True in s]


def _pair_labels(offs: pd.DataFrame, configs: Mapping[str, CellConfig]) -> list[str]:
    """Series labels of the pairs' off cells among themselves (caching is off in all of them)."""
    idents = [series_identity(configs[cid], str(e)) for cid, e in zip(offs["cell_id"], offs["engine"])]
    frame = offs.assign(variant=[digest(i)[:4] for i in idents])
    return series_labels(frame, [flat_identity(i) for i in idents])


def cache_savings(ok: pd.DataFrame, configs: Mapping[str, CellConfig]) -> list[CacheSaving]:
    """See the module doc; sorted by workload, series, batch size and repeat."""
    pairs = cache_pairs(ok, configs)
    if not pairs:
        return []
    offs = pd.DataFrame([off for off, _ in pairs]).reset_index(drop=True)
    labels = _pair_labels(offs, configs)
    out = []
    for label, (off, on) in zip(labels, pairs):
        source = off.get(WORKLOAD_SOURCE)
        out.append(CacheSaving(
            workload=str(off["workload"]), workload_source=source if isinstance(source, str) else None,
            series=label, engine=str(off["engine"]), batch_size=int(off["batch_size"]), repeat=int(off["repeat"]),
            offered_rate_rps=float(off[OFFERED_RATE_RPS]), hit_rate=float(on[PREFIX_CACHE_HIT_RATE]),
            off=_side(off), on=_side(on), simulated=bool(off["simulated"] or on["simulated"])))
    return sorted(out, key=lambda s: (s.workload, s.series, s.batch_size, s.repeat))


def savings_frame(savings: list[CacheSaving]) -> pd.DataFrame:
    """The pairs as a table (full precision, for CSV): one row each, ``<metric>_off`` / ``_on``."""
    rows = []
    for s in savings:
        row = {"workload": s.workload, WORKLOAD_SOURCE: s.workload_source, "series": s.series, "engine": s.engine,
               "batch_size": s.batch_size, "repeat": s.repeat, OFFERED_RATE_RPS: s.offered_rate_rps,
               PREFIX_CACHE_HIT_RATE: s.hit_rate, "simulated": s.simulated,
               "energy_per_request_change_pct": s.energy_per_request_change_pct}
        for name, side in (("off", s.off), ("on", s.on)):
            row.update({f"{k}_{name}": v for k, v in vars(side).items()})
        rows.append(row)
    return pd.DataFrame(rows)
