"""``sweep.strategy=check``: an active sweep's predictions checked against measurements — a random
``sweep.check_cells`` of the cells its record (``active_sweep.json``) predicted are measured, and
each measurement is set against the prediction and the 90% interval the record gave it (issue 31).

The first run draws the cells (``sweep.seed``) from the record's predicted cells that this grid
launches, and freezes their predictions into ``active_check.json`` beside the record, before any
cell runs: the active sweep rewrites its record when it resumes (a checked cell then counts as
measured), and a check must keep comparing with what was predicted before the measurement. A
resumed check reads the frozen file and runs only the cells not yet complete; an interrupted one
has recorded the cells it completed (the others have no status yet).

``active_check.json``: the cells (label, series, level, the prediction with its interval per
metric, the measured value, the relative error ``measured / predicted - 1`` and whether the
interval ``covered`` it; a cell that did not end ok has its status and no measurement), and per
metric the summary over the cells measured: ``n``, ``median_abs_error``, ``max_abs_error``,
``coverage`` (the share inside their intervals) and ``median_half_width`` (the intervals' relative
half-width). Bad input — no record in the store, no predicted cell of this grid in it — is one
``ConfigError`` line before any cell.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Mapping, Optional

import numpy as np

from orchestrator.config.root import CellConfig, Config
from orchestrator.driver.outcome import SweepOutcome
from orchestrator.driver.runner import Session, interrupted, open_sweep, run_cells
from orchestrator.errors import ConfigError
from orchestrator.search.active_sweep import METRICS, RECORD, CellRecord, read_cells_record, read_record
from orchestrator.search.outcome import read_outcomes
from orchestrator.store.sweep_store import Store

log = logging.getLogger(__name__)

CHECK = "active_check.json"


@dataclass
class CheckedCell:
    """One checked cell: the record's prediction (``values``: per metric the value, ``_low`` and
    ``_high``), then once measured ``status``, ``measured``, ``error`` and ``covered`` per metric."""

    cell_id: str
    label: str
    series: str
    level: str
    values: Dict[str, Optional[float]]
    status: str = ""
    measured: Dict[str, Optional[float]] = field(default_factory=dict)
    error: Dict[str, Optional[float]] = field(default_factory=dict)
    covered: Dict[str, Optional[bool]] = field(default_factory=dict)


@dataclass
class CheckRecord:
    """``active_check.json`` (see the module doc)."""

    name: str
    seed: int
    predicted_cells: int  # of the record's, launchable in this grid: what the draw was from
    cells: List[CheckedCell] = field(default_factory=list)
    summary: Dict[str, Dict[str, Optional[float]]] = field(default_factory=dict)


def draw(predicted: List[CellRecord], n: int, seed: int) -> List[CellRecord]:
    """``n`` of the ``predicted`` cells at random (all of them when fewer), in the record's order."""
    rng = np.random.default_rng(seed)
    keep = set(rng.choice(len(predicted), size=min(n, len(predicted)), replace=False).tolist())
    return [c for i, c in enumerate(predicted) if i in keep]


def compare(cell: CheckedCell, status: str, measured: Mapping[str, Optional[float]]) -> CheckedCell:
    """``cell`` with its measurement (``measured``: metric -> value; ignored unless ``status`` is ok)."""
    out = replace(cell, status=status, measured={}, error={}, covered={})
    if status != "ok":
        return out
    for m in METRICS:
        value, predicted = measured.get(m), cell.values.get(m)
        low, high = cell.values.get(f"{m}_low"), cell.values.get(f"{m}_high")
        out.measured[m] = value
        if value is None or not np.isfinite(value) or not predicted:
            out.error[m] = out.covered[m] = None
            continue
        out.error[m] = float(value / predicted - 1.0)
        out.covered[m] = bool(low <= value <= high) if low is not None and high is not None else None
    return out


def summarize(cells: List[CheckedCell]) -> Dict[str, Dict[str, Optional[float]]]:
    """Per metric over the cells measured: n, median and max absolute error, coverage, median
    relative half-width of their intervals (None where no cell was measured)."""
    out: Dict[str, Dict[str, Optional[float]]] = {}
    for m in METRICS:
        errors = np.abs([e for e in (c.error.get(m) for c in cells) if e is not None])
        done = [c for c in cells if c.error.get(m) is not None]
        halves = [h for h in (relative_half_width(c.values, m) for c in done) if h is not None]
        covered = [float(v) for v in (c.covered.get(m) for c in done) if v is not None]
        out[m] = {
            "n": float(len(done)),
            "median_abs_error": float(np.median(errors)) if done else None,
            "max_abs_error": float(np.max(errors)) if done else None,
            "coverage": float(np.mean(covered)) if covered else None,
            "median_half_width": float(np.median(halves)) if halves else None,
        }
    return out


def relative_half_width(values: Mapping[str, Optional[float]], m: str) -> Optional[float]:
    """A prediction's 90% interval's relative half-width, or None without one."""
    value, low, high = values.get(m), values.get(f"{m}_low"), values.get(f"{m}_high")
    return None if value is None or low is None or high is None or not value else (high - low) / (2 * value)


def read_check(store: Store) -> Optional[CheckRecord]:
    return read_cells_record(store, CHECK, CheckRecord, CheckedCell)


def run_active_check(configs: List[CellConfig], cfg: Config) -> SweepOutcome:
    """Measure ``sweep.check_cells`` predicted cells of the store's active sweep and compare (see
    the module doc); -> the final statuses of the checked cells."""
    session, cells = open_sweep(configs, cfg)
    try:
        check = _frozen(session, cfg, {c.cell_id for c in cells if c.status is None})
    except ConfigError:
        session.discard_if_new()
        raise
    by_id = {c.cell_id: c for c in cells}
    chosen = [by_id[c.cell_id] for c in check.cells]
    print(f"check of active sweep {cfg.name}: measuring {len(chosen)} of its {check.predicted_cells} predicted cells "
          f"(seed {check.seed}); predictions frozen in {cfg.store.location}/{CHECK}", flush=True)
    try:
        outcome = run_cells(session, chosen, manifest=cells)
    except KeyboardInterrupt:
        interrupted(None, cfg, {}, len(chosen))
    finally:  # an interrupted check (run_cells exits 130) still records the cells it completed
        _record_measured(session.store, check)
    return outcome


def _record_measured(store: Store, check: CheckRecord) -> None:
    """Set each checked cell's measurement in the store against its frozen prediction, rewrite
    ``active_check.json`` and print the summary per metric."""
    found = read_outcomes(store, [c.cell_id for c in check.cells])
    check.cells = [compare(c, found[c.cell_id].status if c.cell_id in found else "",
                           {m: getattr(found[c.cell_id], m) for m in METRICS} if c.cell_id in found else {})
                   for c in check.cells]
    check.summary = summarize(check.cells)
    store.write_text(CHECK, json.dumps(asdict(check), indent=1))
    for m, s in check.summary.items():
        if s["n"]:
            print(f"check {m}: {int(s['n'])} of {len(check.cells)} cells measured, median |error| "
                  f"{s['median_abs_error']:.1%} (max {s['max_abs_error']:.1%}), {s['coverage']:.0%} inside their "
                  f"90% intervals (median half-width ±{s['median_half_width']:.1%})", flush=True)


def _frozen(session: Session, cfg: Config, launchable: set) -> CheckRecord:
    """The check's cells and their predictions: the store's frozen ones, else a fresh draw from the
    record, written before any cell runs."""
    previous = read_check(session.store)
    if previous is not None:
        missing = [c.label for c in previous.cells if c.cell_id not in launchable]
        if missing:
            raise ConfigError(f"sweep.strategy=check: {CHECK} in {cfg.store.location} checks cells this grid does "
                              f"not launch ({', '.join(missing[:3])}): run the grid of the active sweep it checks")
        return previous
    record = read_record(session.store)
    if record is None:
        raise ConfigError(f"sweep.strategy=check: {cfg.store.location} holds no {RECORD}: "
                          "run the grid with sweep.strategy=active first")
    predicted = [c for c in record.cells if c.source == "predicted" and c.cell_id in launchable
                 and all(c.values.get(m) is not None for m in METRICS)]
    if not predicted:
        raise ConfigError(f"sweep.strategy=check: the {RECORD} in {cfg.store.location} predicts no cell of this grid")
    check = CheckRecord(cfg.name, cfg.sweep.seed, len(predicted), [
        CheckedCell(c.cell_id, c.label, c.series, c.level, dict(c.values))
        for c in draw(predicted, cfg.sweep.check_cells, cfg.sweep.seed)])
    session.store.write_text(CHECK, json.dumps(asdict(check), indent=1))
    return check
