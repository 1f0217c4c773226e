"""The pick, robust to noise: the best feasible trial and any feasible trial within
``search.tie_rel`` of it (at most ``search.confirm_top``) are measured ``search.confirm_repeats``
more times (repeat 1, 2, ...: their own cells, ids and seeds); a candidate stays feasible only
if every repeat meets the SLOs unsaturated, and the pick is the lowest mean value among those.
Where no candidate survives, the best unconfirmed feasible trial is picked and says so.
"""
from __future__ import annotations

from dataclasses import replace
from statistics import fmean
from typing import Dict, List, Mapping, Optional

from orchestrator.core.cell import EngineChoice
from orchestrator.driver import grid
from orchestrator.search.driver import Evaluation, SearchLoop, trial_record
from orchestrator.search.outcome import combined
from orchestrator.search.record import Pick


def ranked_feasible(loop: SearchLoop) -> List[Evaluation]:
    """The feasible first-repeat evaluations, best (lowest value) first."""
    feasible = [ev for ev in loop.known.values() if ev.verdict.feasible and ev.cell.config.repeat == 0]
    return sorted(feasible, key=lambda ev: (ev.value, ev.cell.cell_id))


def ties(loop: SearchLoop) -> List[Evaluation]:
    ranked = ranked_feasible(loop)
    if not ranked:
        return []
    best = ranked[0].value
    return [ev for ev in ranked[: loop.search.confirm_top] if ev.value <= best + loop.search.tie_rel * abs(best)]


def confirm_and_pick(loop: SearchLoop, auto: Mapping[str, EngineChoice]) -> Optional[Pick]:
    """Confirm the ties (see module doc) and return the pick (None: no feasible trial)."""
    tied = ties(loop)
    if not tied:
        return None
    repeats: Dict[str, List[Evaluation]] = {ev.cell.cell_id: [ev] for ev in tied}
    extra = {}
    for ev in tied:
        for r in range(1, loop.search.confirm_repeats + 1):
            (cell,) = grid.cells([replace(ev.cell.config, repeat=r)], auto)
            extra[cell.cell_id] = (ev.cell.cell_id, cell)
    if extra:
        loop.evaluate([cell for _, cell in extra.values()])
        for cell_id, (first, cell) in extra.items():
            ev = loop.known[cell_id]
            repeats[first].append(ev)
            cand = loop.candidate_of(cell)
            loop.record.trials.append(trial_record(len(loop.record.trials), loop.record.rounds, cand, ev,
                                                   loop.sources[cell_id], loop.goal, confirmation=True))
        loop.record.rounds += 1
    return _choose(loop, repeats)


def _choose(loop: SearchLoop, repeats: Dict[str, List[Evaluation]]) -> Pick:
    survivors = [evs for evs in repeats.values() if combined(e.verdict for e in evs).feasible]
    confirmed = bool(survivors)
    if not survivors:  # no tie held: the best feasible trial not tried as a tie, unconfirmed
        rest = [ev for ev in ranked_feasible(loop) if ev.cell.cell_id not in repeats]
        survivors = [[rest[0]]] if rest else [list(repeats.values())[0][:1]]
    best = min(survivors, key=lambda evs: (fmean(e.value for e in evs), evs[0].cell.cell_id))
    cand = loop.candidate_of(best[0].cell)
    per_request = [e.outcome.energy_per_request(loop.goal.objective) for e in best if e.outcome is not None]
    return Pick(params=[list(p) for p in cand.params], cell_ids=[e.cell.cell_id for e in best],
                value=loop.goal.shown(fmean(e.value for e in best)),
                energy_per_request_j=fmean(per_request) if per_request else float("nan"),
                confirmed=confirmed and loop.search.confirm_repeats > 0)
