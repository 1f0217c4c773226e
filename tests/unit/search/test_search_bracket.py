"""The capacity search's bracket on a sorted rate axis: it finds the last passing rate before the
first failure in about log2(n) asks (one per round) or fewer rounds with several slots, keeps the
highest pass below the lowest failure when results are not monotone, and once closed asks a known
rate (the search loop stops on repeated asks)."""
from __future__ import annotations

import pytest

from orchestrator.search.bracket import Bracket
from orchestrator.search.outcome import Reason, Verdict
from orchestrator.search.space import Axis, Candidate, Space

RATES = ("1", "2", "4", "6", "8", "10", "12", "16", "20", "24", "32", "40", "48", "64", "80", "96", "128")


def space() -> Space:
    axis = Axis("workload.rate_rps", RATES, ordered=True)
    return Space((axis,), tuple(Candidate(((axis.key, r),), config=None) for r in RATES))


def verdict(ok: bool) -> Verdict:
    return Verdict(violations=(0.0, 0.0, 0.0 if ok else 1.0, 0.0), reasons=() if ok else (Reason.saturated,))


def run(b: Bracket, passes, slots: int, max_rounds: int = 20):
    asked, rounds = [], 0
    while rounds < max_rounds:
        batch = [b.ask() for _ in range(slots)]
        new = [(t, c) for t, c in batch if t not in b.passed]
        if not new:
            break
        for t, c in batch:
            if t not in b.passed:
                asked.append(float(c.value("workload.rate_rps")))
                b.tell(t, 0.0, verdict(passes(float(c.value("workload.rate_rps")))))
        rounds += 1
    return asked, rounds


@pytest.mark.parametrize("capacity", [0.5, 1, 6, 32, 40, 128])
def test_bisection_finds_the_last_passing_rate(capacity):
    b = Bracket(space(), parallel=1)
    asked, rounds = run(b, lambda r: r <= capacity, slots=1)
    low, high = b.bounds()
    expected = max((i for i, r in enumerate(RATES) if float(r) <= capacity), default=-1)
    assert low == expected and high == expected + 1
    assert len(asked) <= 5  # ceil(log2(17 + 1))


def test_several_slots_close_it_in_fewer_rounds():
    b = Bracket(space(), parallel=3)
    asked, rounds = run(b, lambda r: r <= 40, slots=3)
    assert b.bounds() == (RATES.index("40"), RATES.index("48"))
    assert rounds <= 3 and len(set(asked)) == len(asked)  # no rate measured twice


def test_non_monotone_results_keep_the_pass_below_the_first_failure():
    b = Bracket(space(), parallel=1)
    for rate, ok in (("16", False), ("8", True), ("32", True)):  # 32 passing above a failure: noise
        b.tell(RATES.index(rate), 0.0, verdict(ok))
    assert b.bounds() == (RATES.index("8"), RATES.index("16"))
    index, cand = b.ask()
    assert cand.value("workload.rate_rps") in ("10", "12")
