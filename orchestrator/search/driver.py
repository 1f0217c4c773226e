"""The search loop, on the driver: a round at a time, ask the study for as many new cells as
there are slots (GPUs of the type), run them through the runner (``runner.run_cells``: the
same store, skip-complete, pre-launch rows, claims and dispatch as a sweep), read their
outcomes back from the store, tell the study; stop at the cell budget, when every launchable
candidate is measured, or when the sampler only proposes measured cells.

Trials are ordinary cells, so a resumed search replays itself: the sampler is seeded and is told
the same values (read from the store) in the same order, so it asks the same cells; those
already complete are read, not run. A candidate asked again is told its known outcome without a
new cell (discrete space: the sampler may propose a point twice). A cell with a pre-launch
status (unsupported, infeasible VRAM) costs nothing and is not counted.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from orchestrator.config.search import SearchConfig
from orchestrator.core.cell import Cell
from orchestrator.driver.runner import Session, run_cells
from orchestrator.search.contracts import Goal, Study
from orchestrator.search.kinds import SEARCH_KINDS
from orchestrator.search.outcome import Outcome, Verdict, read_outcomes
from orchestrator.search.record import SearchRecord, TrialRecord, write_record
from orchestrator.search.space import Candidate, Space

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """A cell's outcome, verdict and value (as told to the study)."""

    cell: Cell
    outcome: Optional[Outcome]
    verdict: Verdict
    value: float


@dataclass
class Asked:
    """The trials of one round, by cell (several trials may name one cell)."""

    new: Dict[str, Cell] = field(default_factory=dict)
    trials: List[Tuple[Any, Candidate, Cell]] = field(default_factory=list)  # (study's handle, candidate, cell)
    exhausted: bool = False  # the sampler only proposed known cells

    def slots_used(self) -> int:
        return sum(1 for c in self.new.values() if c.status is None)


@dataclass
class SearchLoop:
    """One search over ``space`` with ``goal`` (``SEARCH_KINDS[search.kind].goal(search)``); each
    ``run`` asks a fresh study of the kind (``SEARCH_KINDS[search.kind].study``)."""

    session: Session
    space: Space
    cells: Dict[Tuple, Cell]  # candidate params -> its cell
    goal: Goal
    search: SearchConfig
    parallel: int
    record: SearchRecord
    saved: SearchRecord  # the record written after each round (this one, or the one holding it)
    known: Dict[str, Evaluation] = field(default_factory=dict)
    used: List[str] = field(default_factory=list)  # launchable cells measured or read, in order
    sources: Dict[str, str] = field(default_factory=dict)  # cell id -> measured | store | prelaunch

    def run(self, budget: int) -> str:
        """Rounds until ``budget`` launchable cells are used; -> why the loop stopped."""
        study = SEARCH_KINDS[self.search.kind].study(self.space, self.search, self.parallel)
        launchable = {c.cell_id for c in self.cells.values() if c.status is None}
        while len(self.used) < budget:
            if launchable <= set(self.known):
                return "every launchable candidate is measured"
            asked = self._ask(study, min(self.parallel, budget - len(self.used)))
            if not asked.new and study.closed:
                return "the bracket is closed: the capacity lies between a passing and a failing rate"
            if not asked.new:
                return f"the sampler proposed only measured cells ({self.search.max_duplicate_asks} asks in a row)"
            self.evaluate(list(asked.new.values()))
            for trial, cand, cell in asked.trials:
                self._tell(study, trial, cand, cell, "measured")
            self.record.rounds += 1
            write_record(self.session.store, self.saved)
        return f"the cell budget ({budget}) is used"

    def run_grid(self) -> str:
        """``search.method=grid``: every candidate in one round (the brute-force reference)."""
        cells = list({c.cell_id: c for c in self.cells.values()}.values())
        self.evaluate(cells)
        for cand in self.space.candidates:
            self._tell(None, None, cand, self.cells[cand.params], "measured")
        self.record.rounds += 1
        return "every candidate is measured (method=grid)"

    def _ask(self, study: Study[Any], slots: int) -> Asked:
        """Ask until ``slots`` new launchable cells (pre-launch ones ride along for free);
        known cells are told at once."""
        asked = Asked()
        streak = 0
        while asked.slots_used() < slots and streak < self.search.max_duplicate_asks:
            if study.closed:  # the sampler knows it has nothing new to ask (a closed bracket)
                asked.exhausted = True
                break
            trial, cand = study.ask()
            cell = self.cells[cand.params]
            if cell.cell_id in self.known:
                self._tell(study, trial, cand, cell, "cache")
                streak += 1
                continue
            streak = streak + 1 if cell.cell_id in asked.new else 0
            asked.new.setdefault(cell.cell_id, cell)
            asked.trials.append((trial, cand, cell))
        return asked

    def evaluate(self, cells: Sequence[Cell]) -> Dict[str, Evaluation]:
        """Run the cells not yet complete, read every outcome; -> evaluations by cell id."""
        before = self.session.store.completed()
        run_cells(self.session, list(cells), manifest=self._manifest(cells))
        outcomes = read_outcomes(self.session.store, [c.cell_id for c in cells])
        out: Dict[str, Evaluation] = {}
        for cell in cells:
            outcome = outcomes.get(cell.cell_id)
            cand = self.candidate_of(cell)
            out[cell.cell_id] = Evaluation(cell, outcome, self.goal.judge(outcome), self.goal.value(cand, outcome))
            self.known[cell.cell_id] = out[cell.cell_id]
            if cell.status is None and cell.cell_id not in self.used:
                self.used.append(cell.cell_id)
            self.sources[cell.cell_id] = ("prelaunch" if cell.status is not None
                                           else "store" if before.get(cell.cell_id) == "ok" else "measured")
        return out

    def candidate_of(self, cell: Cell) -> Candidate:
        for cand in self.space.candidates:
            if self.cells[cand.params].cell_id == cell.cell_id:
                return cand
        return _repeat_candidate(self, cell)

    def _manifest(self, cells: Sequence[Cell]) -> List[Cell]:
        ids = set(self.known) | {c.cell_id for c in cells}
        seen = {c.cell_id: c for c in self.cells.values() if c.cell_id in ids}
        seen.update({c.cell_id: c for c in cells})
        return list(seen.values())

    def _tell(self, study: Optional[Study[Any]], trial: Any, cand: Candidate, cell: Cell, source: str) -> None:
        ev = self.known[cell.cell_id]
        if study is not None:
            study.tell(trial, ev.value, ev.verdict)
        source = self.sources.get(cell.cell_id, source) if source != "cache" else "cache"
        self.record.trials.append(trial_record(len(self.record.trials), self.record.rounds, cand, ev, source,
                                               self.goal))


def _repeat_candidate(loop: SearchLoop, cell: Cell) -> Candidate:
    """The candidate a confirmation repeat measures (same config but the repeat index)."""
    for cand in loop.space.candidates:
        if replace(cand.config, repeat=cell.config.repeat) == cell.config:
            return cand
    raise KeyError(cell.cell_id)


def trial_record(number: int, round_: int, cand: Candidate, ev: Evaluation, source: str, goal: Goal,
                 confirmation: bool = False) -> TrialRecord:
    o = ev.outcome
    nan = float("nan")
    return TrialRecord(
        number=number, round=round_, params=[list(p) for p in cand.params], cell_id=ev.cell.cell_id,
        repeat=ev.cell.config.repeat, source=source, status=o.status if o else "missing",
        feasible=ev.verdict.feasible, reasons=[r.value for r in ev.verdict.reasons],
        value=goal.shown(ev.value) if math.isfinite(ev.value) else nan,
        ttft_p99_ms=o.ttft_p99_ms if o else nan, tpot_p99_ms=o.tpot_p99_ms if o else nan,
        saturated=bool(o.saturated) if o else False,
        energy_per_output_token_j=o.energy_per_token_j(goal.objective) if o else nan,
        energy_per_request_j=o.energy_per_request(goal.objective) if o else nan,
        offered_rate_rps=float(cand.config.workload.rate_rps), confirmation=confirmation)
