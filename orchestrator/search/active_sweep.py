"""``sweep.strategy=active``: the grid answered by measuring ``sweep.budget`` of its launchable
cells, chosen round by round, and predicting the rest with 90% intervals (issue 31).

Every launchable cell is first predicted by the simulator (``worker.simulated_prediction``,
each cell's own ``engine.simulated`` options: pass a calibration's overrides to use it). Then
rounds: the cells measured so far (ok rows of the store; a failed cell counts against the budget
and is not tried again) fit one ``active.predictor.ResidualPredictor`` per metric (output tok/s,
gross J per output token); ``active.selection.next_round`` picks the next cells (new engine
paths' corners first, then the widest intervals, an engine start's cells together); the runner
runs them (``runner.run_cells``: the same store, claims, skip-complete and dispatch as a sweep).
It stops when the budget is spent, every cell is measured, or every predicted interval is within
``sweep.target_half_width``.

What the store holds: measured cells are ordinary rows; predictions are never rows of ``runs``
(so resume and the report cannot take them for measurements) but ``active_sweep.json`` beside
``sweep.json``, rewritten after every round: the rounds, and per cell its source (``measured`` or
``predicted``), each metric's value and, predicted, its interval and the level it came from. A
resumed active sweep reads what the store measured and continues with the next round (a round's
ties are broken by ``sweep.seed`` + its index, so the same store gives the same choice).
"""
from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, TypeVar

import numpy as np

from orchestrator.active.predictor import GridCell, ResidualPredictor
from orchestrator.active.selection import next_round
from orchestrator.config.root import CellConfig, Config
from orchestrator.core.cell import Cell
from orchestrator.core.identity import cell_identity, digest
from orchestrator.driver.dispatch import engine_share_key
from orchestrator.driver.outcome import SweepOutcome
from orchestrator.driver.runner import Session, interrupted, open_sweep, run_cells
from orchestrator.errors import Status
from orchestrator.search.outcome import read_outcomes
from orchestrator.store.sweep_store import Store

log = logging.getLogger(__name__)

RECORD = "active_sweep.json"
METRICS = ("output_throughput_tok_s", "energy_per_output_token_j")
"""What an active sweep predicts: output tokens/s and gross J per output token."""


@dataclass
class CellRecord:
    """One cell of ``active_sweep.json``: ``source`` measured | predicted | failed; per metric its
    value, and for a prediction ``{metric}_low`` / ``_high`` (90%) and ``level``; ``series``: its
    engine path (variant included) and workload."""

    cell_id: str
    label: str
    source: str
    values: Dict[str, Optional[float]] = field(default_factory=dict)
    level: str = ""
    series: str = ""  # engine path (with its variant) and workload: what the report groups by


@dataclass
class ActiveRecord:
    """``active_sweep.json``: the budget, the rounds (cell ids picked, each with its summed
    relative half-width when picked), why it stopped, and every launchable cell."""

    name: str
    budget_fraction: float
    budget_cells: int
    launchable: int
    rounds: List[Dict] = field(default_factory=list)
    stopped: str = ""
    cells: List[CellRecord] = field(default_factory=list)


def variants(configs: Sequence[CellConfig], engines: Sequence[str]) -> List[str]:
    """Each cell's engine variant: its engine and quantization options that differ from the
    value most cells of its engine and quantization in the grid have ('' for the usual ones)."""
    flat = [_flat({"engine": ident["engine"][e], "quantization": ident["quantization"]})
            for ident, e in ((cell_identity(c, e), e) for c, e in zip(configs, engines))]
    groups: Dict[tuple, List[int]] = {}
    for i, (c, e) in enumerate(zip(configs, engines)):
        groups.setdefault((e, c.quantization.name), []).append(i)
    out = [""] * len(flat)
    for members in groups.values():  # the usual options of each engine x quantization
        keys = sorted({k for i in members for k in flat[i]})
        usual = {k: Counter(flat[i].get(k) for i in members).most_common(1)[0][0] for k in keys}
        for i in members:
            out[i] = ",".join(f"{k}={v}" for k, v in sorted(flat[i].items()) if v != usual[k])
    return out


def _flat(tree: Mapping, prefix: str = "") -> Dict[str, str]:
    out: Dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value, sort_keys=True, default=str)
    return out


def grid_cells(cells: Sequence[Cell], simulated: Mapping[str, Mapping[str, float]]) -> Dict[str, List[GridCell]]:
    """The predictor's view of the launchable ``cells``, per metric (``simulated``: cell id ->
    metric -> the simulator's value)."""
    names = variants([c.config for c in cells], [c.engine for c in cells])
    out: Dict[str, List[GridCell]] = {m: [] for m in METRICS}
    for c, variant in zip(cells, names):
        cfg = c.config
        if cfg.tensor_parallel_size != 1:  # over several GPUs: a path of its own, never corrected by one GPU's
            variant = ",".join(v for v in (variant, f"tensor_parallel_size={cfg.tensor_parallel_size}") if v)
        workload = f"{cfg.workload.name}@{digest(cell_identity(cfg, c.engine)['workload'])[:8]}"
        for m in METRICS:
            out[m].append(GridCell(key=c.cell_id, base=f"{c.engine}:{cfg.model.name}/{cfg.quantization.name}/{cfg.gpu.name}",
                                   variant=variant, workload=workload, batch_size=int(cfg.batch_size),
                                   quantization=cfg.quantization.name, simulated=float(simulated[c.cell_id][m])))
    return out


def simulate_all(cells: Sequence[Cell]) -> Dict[str, Dict[str, float]]:
    """cell id -> metric -> the simulator's steady-state value."""
    from orchestrator.worker.simulated_prediction import predict_cell

    out = {}
    for c in cells:
        try:
            p = predict_cell(c.config)
            out[c.cell_id] = {METRICS[0]: p.output_tok_s, METRICS[1]: p.j_per_output_token}
        except Exception as exc:  # a cell the simulator cannot run is predicted by nothing: measure it first
            log.warning("the simulator cannot predict %s: %s", c.label(), exc)
            out[c.cell_id] = {m: math.nan for m in METRICS}
    return out


R = TypeVar("R")


def read_cells_record(store: Store, name: str, record: Callable[..., R], cell: Callable[..., object]) -> Optional[R]:
    """The store's JSON file ``name`` (``write_text`` of an ``asdict``) as ``record``, its ``cells``
    as ``cell`` objects; None when the store has none."""
    text = store.read_text(name)
    if text is None:
        return None
    data = json.loads(text)
    data["cells"] = [cell(**c) for c in data.get("cells", [])]
    return record(**data)


def read_record(store: Store) -> Optional[ActiveRecord]:
    return read_cells_record(store, RECORD, ActiveRecord, CellRecord)


UNINFORMATIVE = frozenset({Status.gpu_busy.value, Status.unschedulable.value, Status.wrong_gpu.value,
                           Status.worker_lost.value, Status.unsupported.value, Status.infeasible.value})
"""Statuses that say nothing of the cell itself (where it ran, or an older pre-launch verdict):
they neither count against the budget nor keep the cell from being chosen."""


def run_active_sweep(configs: List[CellConfig], cfg: Config) -> SweepOutcome:
    """Run ``cfg``'s grid as an active sweep (see module doc); -> the final statuses of the cells
    it measured and of those that could not launch (nothing is dispatched for them again)."""
    session, cells = open_sweep(configs, cfg)
    launchable = [c for c in cells if c.status is None]
    if not launchable:  # nothing to choose from: the pre-launch rows, as a sweep writes them
        return run_cells(session, cells)
    try:
        attempted = _rounds(session, cfg, cells, launchable)
    except KeyboardInterrupt:
        interrupted(None, cfg, {}, len(launchable))
    # the final statuses, without dispatching anything: every cell attempted and the pre-launch rows
    final = Session(replace(cfg, store=replace(cfg.store, retry_failed=False)), session.store, session.ray)
    return run_cells(final, [c for c in cells if c.status is not None or c.cell_id in attempted], manifest=cells)


def _rounds(session: Session, cfg: Config, cells: List[Cell], launchable: List[Cell]) -> Set[str]:
    """The rounds (see module doc); -> the ids of the cells attempted."""
    strategy = cfg.sweep
    budget = max(1, math.ceil(strategy.budget * len(launchable)))
    round_cells = strategy.round_cells or max(2, math.ceil(0.05 * len(launchable)))
    print(f"active sweep {cfg.name}: {len(launchable)} launchable cells, measuring at most {budget} "
          f"({strategy.budget:.0%}), {round_cells} per round; predicting the rest with the simulator", flush=True)
    grid = grid_cells(launchable, simulate_all(launchable))
    units = {c.cell_id: engine_share_key(c, cfg.dispatch.share_engines) for c in launchable}
    by_id = {c.cell_id: c for c in launchable}
    previous = read_record(session.store)
    record = ActiveRecord(cfg.name, strategy.budget, budget, len(launchable),
                          rounds=list(previous.rounds) if previous else [])
    held: Set[str] = set()  # picked, but run by another driver: not picked again by this one
    while True:
        outcomes = {k: o for k, o in read_outcomes(session.store, by_id).items() if o.status not in UNINFORMATIVE}
        measured = {m: {k: getattr(o, m) for k, o in outcomes.items() if o.status == "ok" and _finite(getattr(o, m))}
                    for m in METRICS}
        predictors = [ResidualPredictor(grid[m], measured[m]) for m in METRICS]
        open_cells = set(by_id) - set(outcomes) - held
        record.stopped = _stop_reason(len(outcomes), budget, open_cells, held, predictors, strategy.target_half_width)
        record.cells = _cell_records(launchable, outcomes, predictors, grid[METRICS[0]])
        session.store.write_text(RECORD, json.dumps(asdict(record), indent=1, default=str))
        if record.stopped:
            break
        rng = np.random.default_rng(strategy.seed + len(record.rounds))
        picked = next_round(grid[METRICS[0]], units, predictors, min(round_cells, budget - len(outcomes)), rng,
                            skip=set(outcomes) | held)
        print(f"active sweep round {len(record.rounds) + 1}: {len(picked.keys)} cells "
              f"({len(outcomes) + len(picked.keys)} of {budget} measured after it)", flush=True)
        run_cells(session, [by_id[k] for k in picked.keys], manifest=cells)
        ran = {k for k, o in read_outcomes(session.store, picked.keys).items() if o.status not in UNINFORMATIVE}
        held |= set(picked.keys) - ran  # claimed by another driver, or ended where it says nothing of the cell
        if ran:
            record.rounds.append({"cells": sorted(ran, key=picked.keys.index), "widths": picked.widths})
    summary = Counter(c.source for c in record.cells)
    print(f"active sweep done ({record.stopped}): " + ", ".join(f"{n} {s}" for s, n in summary.most_common())
          + f"; predictions in {cfg.store.location}/{RECORD}", flush=True)
    return set(outcomes)


def _number(x) -> Optional[float]:
    """A finite float, else None (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None


def _finite(x) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def _stop_reason(attempted: int, budget: int, open_cells: Set[str], held: Set[str],
                 predictors: Sequence[ResidualPredictor], target: Optional[float]) -> str:
    if not open_cells:
        return "every launchable cell is measured" if not held else "the cells left are being run by another driver"
    if attempted >= budget:
        return "the budget is spent"
    if target is not None and attempted:
        widest = max(pr.predict(k).relative_half_width for pr in predictors for k in open_cells)
        if widest <= target:
            return f"every predicted interval is within ±{target:.0%}"
    return ""


def _cell_records(cells: Sequence[Cell], outcomes, predictors: Sequence[ResidualPredictor],
                  grid: Sequence[GridCell]) -> List[CellRecord]:
    predicted = [p.predict_all() for p in predictors]
    series = {g.key: f"{g.path} · {g.workload}" for g in grid}
    out = []
    for c in cells:
        o = outcomes.get(c.cell_id)
        if o is not None and o.status == "ok":
            out.append(CellRecord(c.cell_id, c.label(), "measured", {m: _number(getattr(o, m)) for m in METRICS},
                                  series=series[c.cell_id]))
            continue
        values: Dict[str, Optional[float]] = {}
        level = ""
        for m, preds in zip(METRICS, predicted):
            p = preds.get(c.cell_id)
            if p is not None:
                values.update({m: _number(p.value), f"{m}_low": _number(p.low), f"{m}_high": _number(p.high)})
                level = p.level.name
        out.append(CellRecord(c.cell_id, c.label(), "failed" if o is not None else "predicted", values, level,
                              series[c.cell_id]))
    return out
