"""An active sweep's whole grid (issue 31): every launchable cell of the grid, measured or predicted,
each number with its source.

``sweep.strategy=active`` (``orchestrator.search.active_sweep``) measures part of a grid and writes
``active_sweep.json`` beside ``sweep.json``: the budget, the rounds, why it stopped, and per
launchable cell its source (``measured`` | ``predicted`` | ``failed``), its values (output tok/s,
gross J per output token) and, predicted, each value's 90% interval (``<metric>_low`` / ``_high``)
and the level its correction came from (``orchestrator.active.predictor``). Predictions are never
rows of ``runs``: this module is the only part of the report that reads them.

The store's rows are the truth for what was measured: a cell with an ok ``runs`` row is
``measured`` with that row's values (even where the record, written after the previous round,
still predicted it), a cell with another status's row is ``failed`` (no value shown), and only
a cell without a row takes the record's prediction. The record is read as JSON, tolerantly (no
import of the sweep's driver code: the report never needs Ray).

``series`` of a row: the report's series label (``dataset.prepare_runs``) — a measured cell's
own; a predicted cell's that of the measured cells of its engine path and workload where the
record names them (a cell's ``series`` key, when present), else that of the ok rows of its
model, quantization, GPU and workload when they form exactly one series (else '': a grid of
engine variants whose record does not say which one a predicted cell is).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyarrow import fs as pafs

from orchestrator.store.schema import OUTPUT_THROUGHPUT_TOK_S
from orchestrator.store.sweep_store import Store

RECORD = "active_sweep.json"
"""The active sweep's record (``orchestrator.search.active_sweep.RECORD``)."""
ENERGY = "energy_per_output_token_j"
METRICS = (OUTPUT_THROUGHPUT_TOK_S, ENERGY)
"""What an active sweep predicts (``active_sweep.METRICS``): output tok/s, gross J per output token."""
MEASURED, PREDICTED, FAILED = "measured", "predicted", "failed"

COLUMNS = ["cell_id", "label", "model", "quantization", "gpu", "workload", "batch_size", "repeat", "series",
           "source", "level", "status", "simulated",
           *[c for m in METRICS for c in (m, f"{m}_low", f"{m}_high")]]
"""``WholeGrid.table``'s columns (``tables/whole_grid.csv``): ``level`` and the intervals for a
predicted cell only; ``status`` and ``simulated`` (ran on the simulated engine) the runs row's,
where the cell has one."""

_LABEL = re.compile(r"^(?P<head>.+)/bs(?P<batch>\d+)/(?P<workload>.+)/r(?P<repeat>\d+)$")


@dataclass(frozen=True)
class WholeGrid:
    """The record's budget, rounds and stop reason, and ``table``: one row per launchable cell
    (``COLUMNS``), in the report's order (workload, GPU, model, quantization, series, batch size)."""

    name: str
    budget_fraction: float
    budget_cells: int
    launchable: int
    n_rounds: int
    stopped: str
    table: pd.DataFrame

    def count(self, source: str) -> int:
        return int((self.table["source"] == source).sum())

    def median_half_width(self, metric: str) -> float:
        """The median over the predicted cells of the 90% interval's half-width over the value (a
        fraction; NaN when nothing is predicted)."""
        p = self.table[self.table["source"] == PREDICTED]
        widths = (p[f"{metric}_high"] - p[f"{metric}_low"]) / 2 / p[metric]
        widths = widths[np.isfinite(widths)]
        return float(widths.median()) if len(widths) else math.nan

    def best(self, metric: str = ENERGY, source: str | None = None) -> Any | None:
        """The row (a namedtuple) with the least ``metric`` among the measured and predicted cells
        (or those of ``source``); ties: the first cell id. None when no cell has a value."""
        t = self.table[self.table["source"].isin([source] if source else [MEASURED, PREDICTED])]
        t = t[t[metric].notna()].sort_values([metric, "cell_id"])
        return next(t.itertuples(index=False), None)


def read_whole_grid(path: str, runs: pd.DataFrame) -> WholeGrid | None:
    """The whole grid of the store at ``path`` (``runs``: its prepared runs rows,
    ``dataset.SweepData.runs``); None when the store holds no active sweep's record."""
    st = Store.open(path)
    where = f"{st.root}/{RECORD}"
    if st.filesystem.get_file_info(where).type != pafs.FileType.File:
        return None
    with st.filesystem.open_input_stream(where) as f:
        return whole_grid(json.loads(f.read().decode()), runs)


def whole_grid(record: dict, runs: pd.DataFrame) -> WholeGrid:
    """``record``: ``active_sweep.json`` as parsed JSON; ``runs``: the store's prepared runs rows."""
    by_id = {r["cell_id"]: r for r in runs.to_dict("records")}
    ok = runs[runs["status"] == "ok"]
    cells = record.get("cells") or []
    rows = [_row(c, by_id.get(c.get("cell_id"))) for c in cells]
    table = pd.DataFrame(rows, columns=COLUMNS)
    _assign_series(table, cells, ok)
    order = ["workload", "gpu", "model", "quantization", "series", "batch_size", "repeat", "cell_id"]
    table = table.sort_values(order, kind="stable").reset_index(drop=True)
    return WholeGrid(name=str(record.get("name", "")), budget_fraction=float(record.get("budget_fraction", math.nan)),
                     budget_cells=int(record.get("budget_cells", 0)),
                     launchable=int(record.get("launchable", len(cells))),
                     n_rounds=len(record.get("rounds") or []), stopped=str(record.get("stopped") or ""), table=table)


def _row(cell: dict, run: dict | None) -> dict:
    label = str(cell.get("label", ""))
    out: dict[str, Any] = {"cell_id": cell.get("cell_id"), "label": label, **_parse_label(label),
                           "series": "", "level": "", "status": "", "simulated": None}
    out.update({c: math.nan for m in METRICS for c in (m, f"{m}_low", f"{m}_high")})
    if run is not None:  # the store's row: what was measured (or failed), never a prediction
        out.update({k: run[k] for k in ("model", "quantization", "gpu", "workload", "batch_size", "repeat")},
                   status=run["status"], simulated=bool(run.get("simulated", False)))
        if run["status"] == "ok":
            out.update(source=MEASURED, series=run.get("series", ""), **{OUTPUT_THROUGHPUT_TOK_S: _float(
                run.get(OUTPUT_THROUGHPUT_TOK_S)), ENERGY: _float(run.get(ENERGY)) if run.get(
                "energy_available", True) else math.nan})
        else:
            out.update(source=FAILED)
        return out
    source = cell.get("source", PREDICTED)
    values = cell.get("values") or {}
    if source == FAILED:  # (a failed cell has a row; this one's is not in the store)
        out.update(source=FAILED)
    elif source == MEASURED:  # the record measured it, the store holds no row of it
        out.update(source=MEASURED, status="no row in the store", **{m: _float(values.get(m)) for m in METRICS})
    else:
        out.update(source=PREDICTED, level=str(cell.get("level") or ""),
                   **{c: _float(values.get(c)) for m in METRICS for c in (m, f"{m}_low", f"{m}_high")})
    return out


def _parse_label(label: str) -> dict:
    """``model/quantization/gpu/bsN/workload/rR`` (``CellConfig.label``) as its fields."""
    m = _LABEL.match(label)
    parts = m.group("head").rsplit("/", 2) if m else []
    if not m or len(parts) != 3:
        return {"model": label, "quantization": "", "gpu": "", "workload": "", "batch_size": 0, "repeat": 0}
    return {"model": parts[0], "quantization": parts[1], "gpu": parts[2], "workload": m.group("workload"),
            "batch_size": int(m.group("batch")), "repeat": int(m.group("repeat"))}


def _assign_series(table: pd.DataFrame, cells: list[dict], ok: pd.DataFrame) -> None:
    """The series of the rows without one (see the module doc), in place."""
    keyed: dict[str, str] = {str(c.get("cell_id")): str(c["series"]) for c in cells if c.get("series")}
    by_key: dict[str, set] = {}
    for cid, series in zip(table["cell_id"].astype(str), table["series"]):
        if series and cid in keyed:
            by_key.setdefault(keyed[cid], set()).add(series)
    fields = ["model", "quantization", "gpu", "workload"]
    by_fields = ok.groupby(fields)["series"].unique().to_dict() if len(ok) else {}
    for i in table.index[table["series"] == ""]:
        row = table.loc[i]
        cid = str(row["cell_id"])
        known = by_key.get(keyed[cid], set()) if cid in keyed else set(by_fields.get(tuple(row[f] for f in fields), ()))
        if len(known) == 1:
            table.at[i, "series"] = next(iter(known))


def _float(x) -> float:
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan
