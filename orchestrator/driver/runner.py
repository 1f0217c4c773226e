"""The sweep runner, on the driver: cell configs -> (``engine=auto`` resolved on the Ray cluster)
cells -> skip complete ones -> pre-launch status rows -> Ray dispatch -> store -> a summary of how
many cells ended in each status. Its lines on stdout are the command line's own output."""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from orchestrator.config.engine import AUTO
from orchestrator.config.fields import as_plain
from orchestrator.config.root import CellConfig, Config
from orchestrator.core.cell import Cell, EngineChoice
from orchestrator.core.logs import set_log_level
from orchestrator.core.messages import UnitSpec
from orchestrator.driver import grid
from orchestrator.driver.claims import CellClaims, Claim
from orchestrator.driver.dispatch import Dispatcher, connect, make_units
from orchestrator.driver.outcome import EXIT_INTERRUPTED, SweepOutcome
from orchestrator.driver.eta import SweepEta
from orchestrator.store.gpu_duty import sweep_gpu_duty
from orchestrator.driver.placement import gpu_types, place_by_gpus, resolve_auto, slots, unplaceable
from orchestrator.driver.plan_view import STARTS_COLUMNS, active_line, measured_starts, plan_lines
from orchestrator.driver.progress import SweepProgress
from orchestrator.energy import NO_SAMPLER
from orchestrator.engines import cell_engine
from orchestrator.engines.base import Engine
from orchestrator.errors import ConfigError, Status, first_line
from orchestrator.store.cell_tables import status_tables
from orchestrator.store.sweep_store import Store, load

ELSEWHERE = "run by another driver"


@dataclass
class Plan:
    """A sweep's cells split by what happens to them."""

    prelaunch: List[Cell] = field(default_factory=list)  # status rows only (unsupported/infeasible)
    skip: List[Cell] = field(default_factory=list)  # already complete in the store
    run: List[Cell] = field(default_factory=list)


def plan_cells(cells: List[Cell], completed: Mapping[str, str], retry_failed: bool) -> Plan:
    """Split cells into pre-launch, skip (complete: ok, or an unchanged pre-launch status, or
    any status but ``gpu_busy`` with ``retry_failed=false``: a busy GPU says nothing of the
    cell) and run."""
    plan = Plan()
    for c in cells:
        prev = completed.get(c.cell_id)
        if c.status is not None:
            (plan.skip if prev == c.status.value else plan.prelaunch).append(c)
        elif prev == "ok" or (prev is not None and prev != Status.gpu_busy.value and not retry_failed):
            plan.skip.append(c)
        else:
            plan.run.append(c)
    return plan


class _Ray:
    """Connects to Ray once, on first need."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.connected = False
        self.local = False  # the cluster is the local one started here: it never grows

    def ensure(self) -> None:
        if not self.connected:
            try:
                how, self.local = connect(self.cfg.dispatch)
                print(how, flush=True)
            except SystemExit as exc:  # ray.init's own SIGTERM handler exits with the signal's number
                if exc.code == signal.SIGTERM:
                    raise KeyboardInterrupt from None
                raise
            sigterm_as_interrupt()
            self.connected = True


def resolve_engines(configs: List[CellConfig], ray: _Ray) -> Dict[str, EngineChoice]:
    """accelerator type -> ``engine=auto``'s choice for cells of that type (probed on the
    cluster); empty when no config asked for ``auto``."""
    types = grid.needs_auto(configs)
    if not types:
        return {}
    ray.ensure()
    return resolve_auto(types)


def auto_lines(cells: List[Cell]) -> List[str]:
    """One line per (GPU type, engine) that ``engine=auto`` chose: how many cells, and why."""
    groups: Dict[Tuple[str, str, str], int] = Counter(
        (c.config.gpu.accelerator_type, c.engine, c.engine_reason) for c in cells if c.config.engine.name == AUTO)
    return [f"engine=auto: {engine} for {n} {t} cell{'s' if n != 1 else ''} ({why})"
            for (t, engine, why), n in sorted(groups.items())]


def resolve_cells(configs: List[CellConfig], ray: _Ray) -> List[Cell]:
    """Cells of the configs, with ``engine=auto`` resolved on the cluster (which engine runs a
    cell is part of its identity); its choices printed, one line each."""
    cells = grid.cells(configs, resolve_engines(configs, ray))
    for line in auto_lines(cells):
        print(line, flush=True)
    return cells


def check_engines(cells: List[Cell]) -> None:
    """Each engine's own pre-launch check of the cells it would run (``Engine.check_before_launch``:
    e.g. probing a server); ``ConfigError`` (one line) before any Ray task. Its lines are printed."""
    by_engine: Dict[type[Engine], List[CellConfig]] = {}
    for c in cells:
        cls = cell_engine(c) if c.status is None else None
        if cls is not None:
            by_engine.setdefault(cls, []).append(c.config)
    for cls, configs in by_engine.items():
        for line in cls.check_before_launch(configs):
            print(line, flush=True)
    unused = Counter((c.engine, c.config.sampler.name) for c in cells
                     if c.config.sampler.name not in (AUTO, NO_SAMPLER) and c.config.engine.options(c.engine).models_power)
    for (engine, sampler), n in sorted(unused.items()):
        print(f"note: engine {engine} models its own power: sampler={sampler} is not used for its {n} cells "
              "(energy_source=simulated)", flush=True)


def open_store(cfg: Config) -> Store:
    """The sweep's store, created and checked writable; ``ConfigError`` (one line) if it cannot
    be — before any Ray task."""
    key = "store.uri" if cfg.store.uri else "store.dir"
    try:
        store = Store.open(cfg.store.location)
        store.check_writable()
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{key}={cfg.store.location}: cannot create or write the store there ({why})") from None
    return store


@dataclass
class Session:
    """What the cells of one command share: its config, its store (checked writable) and one
    Ray connection, made on first need. A sweep runs its cells once; a search, a round at a
    time."""

    cfg: Config
    store: Store
    ray: _Ray
    new_dir: bool = False  # the store's local directory did not exist before this session

    @classmethod
    def open(cls, cfg: Config) -> "Session":
        """``ConfigError`` before any Ray task when the store cannot be written."""
        local = "://" not in cfg.store.location
        new_dir = local and not os.path.exists(cfg.store.location)
        store = open_store(cfg)
        sigterm_as_interrupt()
        return cls(cfg, store, _Ray(cfg), new_dir)

    def discard_if_new(self) -> None:
        """Remove the store's directory if this session created it and nothing was written in it."""
        if not self.new_dir:
            return
        root = self.store.root
        try:
            for sub in sorted(os.listdir(root)):
                os.rmdir(os.path.join(root, sub))  # only empty table folders go
            os.rmdir(root)
        except OSError:  # something was written: keep it
            pass


def show_plan(configs: List[CellConfig], cfg: Config) -> SweepOutcome:
    """``--plan``: print what the sweep would run (``driver.plan_view``); nothing is written or run
    (``engine=auto`` still probes the cluster: which engine runs a cell is part of its identity)."""
    ray = _Ray(cfg)
    cells = resolve_cells(configs, ray)
    location = cfg.store.location
    stored = [] if "://" not in location and not os.path.isdir(os.path.join(location, "runs")) else \
        load(location).runs.select(list(dict.fromkeys(["cell_id", *STARTS_COLUMNS]))).to_pylist()
    plan = plan_cells(cells, {r["cell_id"]: r["status"] for r in stored}, cfg.store.retry_failed)
    units = make_units(plan.run, cfg.name, gpu_types() if ray.connected else {}, cfg.dispatch.share_engines)
    starts = measured_starts(stored)
    lines = plan_lines(cfg.name, location, cells, {c.cell_id for c in plan.skip}, units, starts)
    if cfg.sweep.active:
        launchable = sum(1 for c in cells if c.status is None)
        done = sum(1 for c in plan.skip if c.status is None)
        lines.insert(-1, "  " + active_line(units, starts, math.ceil(cfg.sweep.budget * launchable) - done))
    if cfg.sweep.check:
        lines.insert(-1, f"  check (sweep.strategy=check): measures {cfg.sweep.check_cells} of the active sweep's "
                         f"predicted cells, drawn with seed {cfg.sweep.seed}; the rest stay predicted")
    for line in lines:
        print(line, flush=True)
    return SweepOutcome(location)


def run_sweep(configs: List[CellConfig], cfg: Config) -> SweepOutcome:
    """Run every cell not yet complete; return the final status count of all cells.
    ``ConfigError`` before any Ray task when the store cannot be written. ``plan=true``: show
    what would run instead (``show_plan``)."""
    if cfg.plan:
        return show_plan(configs, cfg)
    session, cells = open_sweep(configs, cfg)
    return run_cells(session, cells)


def open_sweep(configs: List[CellConfig], cfg: Config) -> Tuple[Session, List[Cell]]:
    """The session (store checked writable, log level set) and the resolved, checked cells;
    ``ConfigError`` before any Ray task (no empty store left behind), exit 130 on Ctrl-C."""
    session = Session.open(cfg)
    set_log_level(cfg.log_level.value)
    try:
        cells = resolve_cells(configs, session.ray)
        check_engines(cells)
    except KeyboardInterrupt:
        interrupted(None, cfg, {}, len(configs))
    except ConfigError:  # bad input found by an engine's check: leave no empty store behind
        session.discard_if_new()
        raise
    return session, cells


def run_cells(session: Session, cells: List[Cell], manifest: Optional[List[Cell]] = None) -> SweepOutcome:
    """Run the cells not yet complete in the session's store (pre-launch rows written, the rest
    dispatched); return the final status count of ``cells`` and the launched cells that did not
    end ok, with their reasons (printed too). ``sweep.json`` lists ``manifest`` (default: ``cells``)."""
    cfg, store, ray = session.cfg, session.store, session.ray
    location = cfg.store.location
    completed = store.completed()
    plan = plan_cells(cells, completed, cfg.store.retry_failed)
    final: Dict[str, str] = {c.cell_id: completed[c.cell_id] for c in plan.skip}
    outcome = SweepOutcome(location)
    claims = CellClaims(store, cfg.store.claim_ttl_s)
    listed = cells if manifest is None else manifest
    try:
        elsewhere = _claim(claims, plan)
        upgraded = store.upgrade()
        if upgraded:
            print(f"brought {upgraded} files of the store up to the current schema (columns added since: null)",
                  flush=True)
        stale = store.discard_partial(c.cell_id for c in plan.run)  # claimed: what is there, a killed writer left
        if stale:
            print(f"removed {stale} temporary files that a killed run left in the store", flush=True)
        for c in plan.prelaunch:
            if c.status is None:  # (plan_cells puts only cells with a pre-launch status here)
                continue
            store.write_cell(c.cell_id, status_tables(c, cfg.name, c.status, c.reason))
            final[c.cell_id] = c.status.value
        print(
            f"sweep {cfg.name}: {len(cells)} cells — {len(plan.run)} to run, {len(plan.skip)} already complete, "
            f"{len(plan.prelaunch)} not launchable (unsupported/infeasible)"
            + (f", {len(elsewhere)} being run by another driver" if elsewhere else "") + f" — results in {location}",
            flush=True,
        )
        _write_manifest(store, cfg, listed)
        if plan.run:
            try:
                ray.ensure()
            except KeyboardInterrupt:
                interrupted(None, cfg, final, len(plan.run))
            try:
                _dispatch(plan.run, cfg, store, final, claims, outcome, ray.local)
            except SystemExit:  # interrupted (``interrupted``): the cells it kept count in the GPU duty too
                _write_manifest(store, cfg, listed)
                raise
            _write_manifest(store, cfg, listed)  # with the dispatch's GPU duty
    finally:
        claims.release()
    outcome.counts = Counter(final.values())
    outcome.counts.update({ELSEWHERE: len(elsewhere)} if elsewhere else {})
    print("sweep done: " + ", ".join(f"{n} {s}" for s, n in outcome.counts.most_common()), flush=True)
    for line in outcome.summary_lines():
        print(line, flush=True)
    if plan.run or plan.prelaunch:
        print(f"report: python -m orchestrator.report {location}", flush=True)
    return outcome


def _claim(claims: CellClaims, plan: Plan) -> Dict[str, "Claim"]:
    """Claim the cells to run; those another live driver holds leave ``plan.run`` (one line
    says so). -> {cell id: the claim that holds it}."""
    kept, held = claims.claim(c.cell_id for c in plan.run)
    plan.run = [c for c in plan.run if c.cell_id in kept]
    if held:
        drivers = sorted({f"{c.who()} since {time.strftime('%H:%M:%S', time.localtime(c.claimed_unix_s))}"
                          for c in held.values()})
        print(f"{len(held)} cells are being run by another driver on this store ({'; '.join(drivers)}): "
              "skipped here; run the command again once it has finished", flush=True)
    return held


def _dispatch(cells: List[Cell], cfg: Config, store: Store, final: Dict[str, str], claims: CellClaims,
              outcome: SweepOutcome, local_cluster: bool) -> None:
    units = place_by_gpus(make_units(cells, cfg.name, gpu_types(), cfg.dispatch.share_engines,
                                        cfg.log_level.value))
    if local_cluster:  # nothing will join it: a task no node can run fails now, not after a timeout
        units = _refuse_unplaceable(units, cfg, store, final, outcome)
        cells = [c for u in units for c in u.cells]
        if not units:
            return

    def on_result(cell_id, status, tables):
        for attempt in range(3):  # a transient filesystem error (e.g. object store) gets two more tries
            try:
                store.write_cell(cell_id, tables)
                break
            except OSError:
                if attempt == 2:
                    raise
                time.sleep(2.0 * (attempt + 1))
        final[cell_id] = status.value
        estimate.finished(cell_id, tables["runs"].slice(0, 1).to_pylist()[0])
        if status is not Status.ok:
            outcome.failures[cell_id] = (status.value, first_line(tables["runs"].column("error")[0].as_py()))

    stored = store.runs_columns(STARTS_COLUMNS).to_pylist()
    estimate = SweepEta(units, measured_starts(stored), slots)
    progress = SweepProgress(len(cells), enabled=cfg.dispatch.progress, estimate=estimate)
    dispatcher = Dispatcher(cfg.dispatch, on_result, tick=claims.heartbeat)
    t0 = time.monotonic()
    try:
        dispatcher.run(units, progress)
    except KeyboardInterrupt:
        progress.close()
        interrupted(dispatcher, cfg, final, len(cells))
    finally:
        progress.close()
    print(f"dispatched {len(cells)} cells in {len(units)} tasks in {time.monotonic() - t0:.1f} s", flush=True)


def _refuse_unplaceable(units: List[UnitSpec], cfg: Config, store: Store, final: Dict[str, str],
                        outcome: SweepOutcome) -> List[UnitSpec]:
    """Record ``unschedulable`` at once, with what the cluster offers, for every unit no live node
    can run (never submitted: no autoscaler line repeats on the console); -> the others."""
    refused = unplaceable(units, cfg.dispatch.place_as_gpu)
    for unit, reason in refused:
        for cell in unit.cells:
            store.write_cell(cell.cell_id, status_tables(cell, cfg.name, Status.unschedulable, reason))
            final[cell.cell_id] = Status.unschedulable.value
            outcome.failures[cell.cell_id] = (Status.unschedulable.value, reason)
    gone = {id(unit) for unit, _ in refused}
    return [u for u in units if id(u) not in gone]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """SIGTERM (``ray job stop``, ``kill``) ends a sweep the way Ctrl-C does (set again after
    ``ray.init``, which installs its own handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, _raise_interrupt)  # (the default, set again in case a library changed it)


def interrupted(dispatcher, cfg: Config, final: Dict[str, str], n_run: int) -> None:
    """Cancel what runs (its workers, vLLM servers and GPU memory go with them), say in one
    line what was kept and how to resume, exit 130."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
    cancelled = dispatcher.cancel_all() if dispatcher is not None else n_run
    try:
        import ray

        ray.shutdown()
    except Exception:
        pass
    counts = Counter(final.values())
    kept = ", ".join(f"{n} {s}" for s, n in counts.most_common()) or "no cell"
    print(f"interrupted: kept {kept} in {cfg.store.location}; cancelled {cancelled} running or waiting cells "
          f"({n_run} were to run); run the same command again to resume", file=sys.stderr, flush=True)
    sys.exit(EXIT_INTERRUPTED)


def _write_manifest(store: Store, cfg: Config, cells: List[Cell]) -> None:
    """``sweep.json``: the sweep's name, its base config (typed, as plain JSON), its cells and the
    GPU duty of those it has measured so far (``gpu_duty``: written before and after a dispatch,
    an interrupted one too)."""
    manifest = {
        "name": cfg.name,
        "written_unix_s": time.time(),
        "config": as_plain(cfg),
        "cells": [{"cell_id": c.cell_id, "label": c.label(), "engine": c.engine} for c in cells],
        "gpu_duty": sweep_gpu_duty(store, cfg.name, [c.cell_id for c in cells]),
    }
    store.write_text("sweep.json", json.dumps(manifest, indent=1))
