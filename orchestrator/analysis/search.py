"""A store's search (``search.json``) for the report: its trials as a frame, the feasible set,
the regions ruled out and why, and, where the store holds every launchable cell of the grid
the search explored (e.g. after ``search.method=grid``), the grid's optimum and its frontier of
J per output token against p99 TPOT, with the pick's gap to the optimum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

import pandas as pd

from orchestrator.analysis.format import gpu_uuids
from orchestrator.config.search import Objective, SloConfig
from orchestrator.search.outcome import read_outcomes, verdict
from orchestrator.search.record import SearchRecord, TrialRecord, read_record
from orchestrator.store.schema import TPOT_P99_MS, TTFT_P99_MS
from orchestrator.store.sweep_store import Store


@dataclass
class GridView:
    """The whole grid, from the store: its feasible optimum and frontier."""

    optimum_value: float
    optimum_params: str
    pick_value: float  # the pick's cell as the grid measured it (repeat 0)
    gap: float  # pick_value / optimum_value - 1
    frontier: pd.DataFrame  # params, value, ttft_p99_ms, tpot_p99_ms, is_pick
    n_feasible: int
    pick_mean_gap: float = math.nan  # the pick's mean over its repeats / optimum_value - 1 (may be < 0)
    gpus: tuple[str, ...] = ()  # (optimum's gpu_uuid, pick's) when different cards measured them


@dataclass
class SearchView:
    record: SearchRecord
    trials: pd.DataFrame  # one row per trial (TrialRecord fields, params as text)
    feasible: pd.DataFrame  # distinct feasible cells, best first
    regions: List[str]  # "quantization=none: batch_size 1–12 (4 trials): saturated, ttft_slo"
    grid: Optional[GridView]

    @property
    def pick_params(self) -> str:
        return params_text(self.record.pick.params) if self.record.pick else ""


def params_text(params) -> str:
    return " ".join(f"{k}={v}" for k, v in params)


def read_search(path: str) -> Optional[SearchView]:
    """The store's search, or None when it holds none."""
    st = Store.open(path)
    record = read_record(st)
    if record is None:
        return None
    trials = pd.DataFrame([vars(t) | {"params": params_text(t.params)} for t in record.trials])
    first = [t for t in record.trials if not t.confirmation]
    feasible = trials[trials["feasible"] & ~trials["confirmation"]].drop_duplicates("cell_id").sort_values("value")
    if record.kind == "capacity":
        feasible = feasible.iloc[::-1]
    return SearchView(record, trials, feasible, regions(record, first), grid_view(st, record))


def regions(record: SearchRecord, trials: List[TrialRecord]) -> List[str]:
    """Infeasible trials grouped by their values on the other axes, in runs of consecutive values
    of the first ordered axis (or the first axis) that share the same reasons."""
    if not record.axes:
        return []
    primary = record.axes[0][0]
    order = {v: i for i, v in enumerate(record.axes[0][1:])}
    seen: Set[str] = set()
    groups: Dict[str, List[Tuple[int, Optional[str], TrialRecord]]] = {}  # other axes -> (order, value, trial)
    for t in trials:
        if t.cell_id in seen:
            continue
        seen.add(t.cell_id)
        value = dict(t.params).get(primary)
        rest = params_text([(k, v) for k, v in t.params if k != primary])
        groups.setdefault(rest, []).append((order.get(value, -1) if value is not None else -1, value, t))
    out = []
    for rest, members in sorted(groups.items()):
        members.sort(key=lambda m: m[0])
        run: list = []
        for m in members + [None]:
            if run and (m is None or tuple(m[2].reasons) != tuple(run[0][2].reasons)):
                if run[0][2].reasons:
                    span = run[0][1] if len(run) == 1 else f"{run[0][1]}–{run[-1][1]}"
                    where = f"{rest}: " if rest else ""
                    out.append(f"{where}{primary} {span} ({len(run)} trial{'s' * (len(run) > 1)}): "
                               f"{', '.join(run[0][2].reasons)}")
                run = []
            if m is not None:
                run.append(m)
    return out


def grid_view(st: Store, record: SearchRecord) -> Optional[GridView]:
    """The grid's optimum and frontier when every launchable candidate cell is in the store."""
    outcomes = read_outcomes(st, record.grid_cell_ids)
    if not record.grid_cell_ids or len(outcomes) < len(record.grid_cell_ids) or record.kind != "energy_slo":
        return None
    slo = SloConfig(record.ttft_p99_slo_ms, record.tpot_p99_slo_ms)
    objective = Objective(record.objective)
    params = dict(zip(record.grid_cell_ids, record.grid_cell_params))
    rows = []
    for cid, o in outcomes.items():
        if verdict(o, slo, objective).feasible:
            rows.append({"cell_id": cid, "params": params.get(cid, cid), "value": o.energy_per_token_j(objective),
                         TTFT_P99_MS: o.ttft_p99_ms, TPOT_P99_MS: o.tpot_p99_ms})
    pick_id = record.pick.cell_ids[0] if record.pick else None
    pick_o = outcomes.get(pick_id) if pick_id is not None else None
    feasible = pd.DataFrame(rows, columns=["cell_id", "params", "value", TTFT_P99_MS, TPOT_P99_MS])
    if feasible.empty:
        return GridView(math.nan, "", math.nan, math.nan, feasible.assign(is_pick=[]), 0)
    best = feasible.sort_values(["value", "cell_id"]).iloc[0]
    optimum = float(best["value"])
    pick_value = pick_o.energy_per_token_j(objective) if pick_o is not None else math.nan
    frontier = _frontier(feasible).assign(is_pick=lambda f: f["cell_id"] == pick_id)
    mean_gap = record.pick.value / optimum - 1 if record.pick and len(record.pick.cell_ids) > 1 else math.nan
    units = (outcomes[best["cell_id"]].gpu_uuid, pick_o.gpu_uuid if pick_o is not None else "")
    sets = [set(gpu_uuids(u)) for u in units]
    gpus = units if all(sets) and sets[0] != sets[1] else ()
    return GridView(optimum, str(best["params"]), pick_value, pick_value / optimum - 1, frontier, len(feasible),
                    mean_gap, gpus)


def _frontier(feasible: pd.DataFrame) -> pd.DataFrame:
    """Feasible cells not beaten on both J per output token and p99 TPOT by another one."""
    rows, best = [], math.inf
    for r in feasible.sort_values([TPOT_P99_MS, "value"]).itertuples(index=False):
        if r.value < best:
            rows.append(r)
            best = r.value
    return pd.DataFrame(rows, columns=feasible.columns)
