"""``search.json`` (``search-grid.json`` for ``search.method=grid``): what a search did, for
the report. Written atomically in the store's root after every round, so an interrupted search
leaves a record of its completed rounds. Trials are cells: their measurements are in ``runs``;
the record says which cells were trials, in which round, what was asked and what was decided.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from orchestrator.store.sweep_store import Store


@dataclass
class TrialRecord:
    """One trial: a candidate asked by the sampler (or a confirmation repeat), its cell and
    verdict. ``source``: ``measured`` (run in this command), ``store`` (complete before:
    resumed), ``cache`` (asked again after it was told: no new cell), ``prelaunch`` (a status row
    without launching: unsupported, infeasible)."""

    number: int
    round: int
    params: List[List[str]]
    cell_id: str
    repeat: int
    source: str
    status: str
    feasible: bool
    reasons: List[str]
    value: float  # the goal's reported value (J/output token, or req/s for capacity)
    ttft_p99_ms: float
    tpot_p99_ms: float
    saturated: bool
    energy_per_output_token_j: float
    energy_per_request_j: float
    offered_rate_rps: float
    confirmation: bool = False


@dataclass
class Pick:
    """The chosen candidate: its params, every cell measuring it (repeats), the mean value over
    them, and whether the confirmation repeats held it feasible."""

    params: List[List[str]]
    cell_ids: List[str]
    value: float
    energy_per_request_j: float
    confirmed: bool


@dataclass
class SearchRecord:
    """A search: its settings, trials, pick, and the grid it searched (ids of every launchable
    candidate cell, so the report can tell whether the whole grid is in the store too)."""

    name: str
    kind: str
    method: str
    objective: str
    value_name: str
    ttft_p99_slo_ms: float
    tpot_p99_slo_ms: float
    axes: List[List[str]]
    grid_cells: int
    grid_launchable_cells: int
    grid_cell_ids: List[str]
    grid_cell_params: List[str]  # each launchable cell's values on the axes ("batch_size=8 quantization=fp8")
    max_cells: int
    parallel: int
    seed: int
    trials: List[TrialRecord] = field(default_factory=list)
    cells_launched: int = 0
    rounds: int = 0
    stop_reason: str = ""
    pick: Optional[Pick] = None
    headroom: Optional["SearchRecord"] = None


def file_name(method: str) -> str:
    return "search.json" if method == "optuna" else f"search-{method}.json"


def write_record(store: Store, record: SearchRecord) -> None:
    """Atomically (temporary file + move) under the store's root."""
    final = f"{store.root}/{file_name(record.method)}"
    with store.filesystem.open_output_stream(f"{final}.tmp") as out:
        out.write(json.dumps(dataclasses.asdict(record), indent=1, default=str).encode())
    store.filesystem.move(f"{final}.tmp", final)


def read_record(store: Store, method: str = "optuna") -> Optional[SearchRecord]:
    """The store's search record (None when it has none)."""
    from pyarrow import fs as pafs

    path = f"{store.root}/{file_name(method)}"
    if store.filesystem.get_file_info(path).type != pafs.FileType.File:
        return None
    with store.filesystem.open_input_stream(path) as f:
        return _record(json.loads(f.read().decode()))


def _record(data: Dict[str, Any]) -> SearchRecord:
    data = dict(data)
    data["trials"] = [TrialRecord(**t) for t in data.get("trials", [])]
    data["pick"] = Pick(**data["pick"]) if data.get("pick") else None
    data["headroom"] = _record(data["headroom"]) if data.get("headroom") else None
    names = {f.name for f in dataclasses.fields(SearchRecord)}
    return SearchRecord(**{k: v for k, v in data.items() if k in names})
