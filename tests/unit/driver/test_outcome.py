"""A sweep's outcome (``driver.outcome``): the exit status and the closing lines of its failures."""
from __future__ import annotations

from collections import Counter

from orchestrator.driver.outcome import EXIT_FAILED_CELLS, EXIT_OK, SweepOutcome
from orchestrator.errors import first_line


def test_no_launched_failure_exits_0_and_prints_nothing_more():
    outcome = SweepOutcome("outputs/x", Counter({"ok": 3, "infeasible": 2}))
    assert outcome.exit_code() == EXIT_OK == 0 and outcome.summary_lines() == []


def test_failures_by_status_with_their_distinct_reasons_bounded_and_the_command():
    failures = {f"c{i}": ("oom", f"CUDA out of memory at batch {i % 7}") for i in range(20)}
    failures.update(t1=("timeout", "cancelled after 60 s per cell"), t2=("timeout", "cancelled after 60 s per cell"))
    outcome = SweepOutcome("outputs/x", Counter({"oom": 20, "timeout": 2, "ok": 1}), failures)
    assert outcome.exit_code() == EXIT_FAILED_CELLS == 3
    lines = outcome.summary_lines(max_reasons=3)
    assert lines[0] == "22 launched cells did not end ok:"
    assert lines[1] == "  20 oom:" and lines[2].startswith("    3 × CUDA out of memory at batch ")
    assert lines[5] == "    ... and 4 other reasons"
    assert lines[6:8] == ["  2 timeout:", "    2 × cancelled after 60 s per cell"]
    assert lines[-1] == "every failed cell with its reason: python -m orchestrator.store outputs/x --failed"


def test_the_first_line_is_the_reason():
    assert first_line("vLLM ran out of memory\nTraceback ...") == "vLLM ran out of memory"
    assert first_line("") == first_line("  \n") == "(no reason recorded)"
