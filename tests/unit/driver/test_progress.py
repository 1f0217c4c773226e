"""The live progress display (``driver.progress``): at 80 columns the sweep's counts, elapsed
time and ETA are never cut (a long cell label is); plain lines off a terminal; the ETA from the
per-group estimate counts down between finishes and falls back to the mean pace without one."""
from __future__ import annotations

import io
import re

from rich.console import Console

from orchestrator.core.phases import CellPhase, Phase
from orchestrator.driver.progress import SweepProgress

LONG = "llama2_70b_awq/awq/h100/chat_long_context/bs256/r0 [enforce_eager=true, max_num_batched_tokens=8192]"


class _Fixed:
    """A stand-in estimate: a fixed number of seconds left (``SweepEta``'s one method used)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def remaining_s(self) -> float:
        return self.seconds


def _screen(progress: SweepProgress, width: int) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(progress.renderable())
    return console.export_text().splitlines()


def _busy(progress: SweepProgress) -> None:
    for i in range(10327):
        progress.update(status="ok" if i % 50 else "oom", cell_id=f"c{i}")
    progress.update(running=16)
    progress.phase(LONG, CellPhase("run-1", Phase.measuring, done=123, total=300, unit="requests"))


def test_the_sweep_line_reads_whole_at_80_columns():
    progress = SweepProgress(12630, tty=False, enabled=False, estimate=_Fixed(3 * 3600 + 21 * 60))
    _busy(progress)
    head, cell = _screen(progress, 80)
    assert len(head) <= 80 and len(cell) <= 80
    assert re.match(r"\[10327/12630 cells\] ok 10120  failed 207  running 16  elapsed 0:0\d  ETA 3:2[01]:\d\d",
                    head), head
    assert cell.startswith("  llama2_70b_awq/awq/h100/chat_long") and "…" in cell
    assert cell.rstrip().endswith("measuring 123/300 requests  0:00"), cell
    wide_head, wide_cell = _screen(progress, 200)
    assert LONG in wide_cell and "━" in wide_head  # room for the label and a bar


def test_the_eta_counts_down_between_finishes_and_falls_back_to_the_pace(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("orchestrator.driver.progress.time.monotonic", lambda: clock[0])
    fixed = SweepProgress(4, enabled=False, estimate=_Fixed(600.0))
    clock[0] += 90.0
    assert fixed.eta() == "8:30"  # no cell finished yet: the estimate, less the time since
    fixed.estimate = _Fixed(100.0)
    fixed.update(status="ok", cell_id="a")  # a finish takes the estimate again
    assert fixed.eta() == "1:40"
    paced = SweepProgress(4, enabled=False)
    assert paced.eta() == ""  # no estimate and no cell done: nothing to say
    clock[0] += 30.0
    paced.update(status="ok", cell_id="a")
    assert paced.eta() == "1:30"  # 30 s a cell, 3 left
    for c in "bcd":
        paced.update(status="ok", cell_id=c)
    assert paced.eta() == "" and fixed.eta() != ""


def test_plain_lines_off_a_terminal():
    out = io.StringIO()
    progress = SweepProgress(2, tty=False, out=out, estimate=_Fixed(42.0))
    progress.phase("tiny/none/h100/offline/bs1/r0", CellPhase("x", Phase.engine_starting))
    progress.update(status="ok", label="tiny/none/h100/offline/bs1/r0", cell_id="x")
    lines = out.getvalue().splitlines()
    assert lines[0] == "  tiny/none/h100/offline/bs1/r0: engine starting"
    assert re.fullmatch(r"\[1/2 cells\] ok 1  failed 0  running 0  elapsed 0:00  ETA 0:4[12]  "
                        r"tiny/none/h100/offline/bs1/r0: ok", lines[1]), lines[1]
