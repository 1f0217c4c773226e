"""A search from the command line (``+search=energy_slo`` / ``+search=capacity``): the
sweeper's jobs -> space -> cells (``engine=auto`` resolved once) -> budget and parallelism ->
``SearchLoop`` -> confirmation and pick -> ``search.json`` -> one answer line (and, for an energy
search with ``search.headroom_rates_rps``, a capacity search of its pick). What differs by kind
(goal, study, space check, headroom) is looked up in ``kinds.SEARCH_KINDS``.

Its lines on stdout are the command line's own output, like the runner's.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from orchestrator.config.root import CellConfig, Config
from orchestrator.config.search import Method, SearchConfig
from orchestrator.core.cell import Cell, EngineChoice
from orchestrator.driver import grid, placement
from orchestrator.driver.runner import Session, auto_lines, check_engines, resolve_engines
from orchestrator.errors import ConfigError
from orchestrator.search.answer import answer_lines
from orchestrator.search.capacity import headroom_jobs, headroom_search
from orchestrator.search.driver import SearchLoop
from orchestrator.search.kinds import SEARCH_KINDS
from orchestrator.search.outcome import slo_targets_ms
from orchestrator.search.pick import confirm_and_pick
from orchestrator.search.record import SearchRecord, write_record
from orchestrator.search.space import Params, Space, space_of

MakeConfigs = Callable[[Sequence[Sequence[str]]], List[CellConfig]]
"""Job override lists -> their cell configs (validated, one per job)."""


def budget_of(search: SearchConfig, launchable: int, parallel: int) -> Tuple[int, int]:
    """(cells the whole search may launch, cells kept for confirmation repeats)."""
    if search.method is Method.grid:
        return launchable, 0
    total = search.max_cells or max(2, math.floor(search.budget_fraction * launchable))
    reserve = min(search.confirm_repeats * search.confirm_top, total - 1)
    return total, reserve


def parallel_of(session: Session, search: SearchConfig, cells: Sequence[Cell]) -> int:
    """``search.parallel``, else as many as the cluster runs at once of the cells' GPU type."""
    if search.parallel:
        return search.parallel
    session.ray.ensure()
    first = next((c for c in cells if c.status is None), cells[0])
    on_gpu = placement.on_gpu(first, placement.gpu_types()) or session.cfg.dispatch.place_as_gpu
    return placement.slots(first.config.gpu.accelerator_type, on_gpu)


def new_record(base: Config, search: SearchConfig, space: Space, cells: Dict[Params, Cell], total: int,
               parallel: int, value_name: str) -> SearchRecord:
    labels = {c.cell_id: cand.label() for cand in space.candidates for c in [cells[cand.params]] if c.status is None}
    launchable = list(labels)
    ttft_slo_ms, tpot_slo_ms = slo_targets_ms(search.slo)
    return SearchRecord(
        name=base.name, kind=search.kind.value, method=search.method.value, objective=search.objective.value,
        value_name=value_name, ttft_p99_slo_ms=ttft_slo_ms, tpot_p99_slo_ms=tpot_slo_ms,
        axes=[[a.key, *a.values] for a in space.axes],
        grid_cells=len({c.cell_id for c in cells.values()}), grid_launchable_cells=len(launchable),
        grid_cell_ids=launchable, grid_cell_params=[labels[c] for c in launchable], max_cells=total,
        parallel=parallel, seed=search.seed)


def search_cells(session: Session, search: SearchConfig, space: Space,
                 configs: Sequence[CellConfig]) -> Tuple[Dict[Params, Cell], Dict[str, EngineChoice]]:
    """-> (candidate params -> cell, the ``engine=auto`` choices)."""
    auto = resolve_engines(list(configs), session.ray)
    cells = {cand.params: grid.cells([cand.config], auto)[0] for cand in space.candidates}
    for line in auto_lines(list({c.cell_id: c for c in cells.values()}.values())):
        print(line, flush=True)
    check_engines(list(cells.values()))  # e.g. an endpoint's probe: once, before any trial
    return cells, auto


def run_one(session: Session, search: SearchConfig, jobs: Sequence[Sequence[str]], configs: Sequence[CellConfig],
            parent: Optional[SearchRecord] = None) -> Tuple[SearchRecord, Space, Dict[Params, Cell]]:
    """One search in an open session; -> its record, space and cells. The record (or, for a
    headroom search, ``parent``, which holds it) is written after every round."""
    kind = SEARCH_KINDS[search.kind]
    if search.method is Method.grid:  # the brute-force reference: one repeat of every cell, no confirmation
        search = replace(search, confirm_repeats=0)
    space = space_of(jobs, configs)
    kind.check_space(space.axes)
    cells, auto = search_cells(session, search, space, configs)
    parallel = parallel_of(session, search, list(cells.values()))
    total, reserve = budget_of(search, len({c.cell_id for c in cells.values() if c.status is None}), parallel)
    goal = kind.goal(search)
    record = new_record(session.cfg, search, space, cells, total, parallel, goal.value_name)
    if parent is not None:
        parent.headroom = record
    loop = SearchLoop(session, space, cells, goal, search, parallel, record, parent or record)
    print(f"search {record.name} ({search.kind.value}, {search.method.value}): {len(space.candidates)} candidates "
          f"on {len(space.axes)} axes, {record.grid_launchable_cells} launchable cells; budget {total} cells "
          f"({reserve} kept for confirmation), {parallel} per round", flush=True)
    record.stop_reason = loop.run_grid() if search.method is Method.grid else loop.run(total - reserve)
    record.pick = confirm_and_pick(loop, auto)
    record.cells_launched = len(loop.used)
    write_record(session.store, parent or record)
    return record, space, cells


def run_search(base: Config, jobs: Sequence[Sequence[str]], configs: List[CellConfig],
               make_configs: MakeConfigs) -> SearchRecord:
    """The search ``base.search`` over the sweep's jobs (``configs``: one per job, validated);
    ``make_configs`` turns further job lists into cell configs (the headroom search)."""
    search = base.search
    if search is None:
        raise ConfigError("a search needs its search.* settings (+search=energy_slo or +search=capacity)")
    session = Session.open(base)
    record, space, cells = run_one(session, search, jobs, configs)
    if SEARCH_KINDS[search.kind].headroom and search.headroom_rates_rps and record.pick is not None:
        job = space.candidate({key: value for key, value in record.pick.params}).job
        sub_jobs = headroom_jobs(job, search.headroom_rates_rps)
        run_one(session, headroom_search(search), sub_jobs, make_configs(sub_jobs), parent=record)
    for line in answer_lines(record):
        print(line, flush=True)
    return record
