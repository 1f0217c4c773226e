"""What a report run is asked to do (the command line, as a dataclass)."""
from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.analysis.cost import CostAssumptions
from orchestrator.analysis.recommend import Slo


@dataclass
class ReportOptions:
    """``sweep_dir``: the sweep (dir or URI); ``out_dir``: where report.md and the PNGs go
    (default ``<sweep_dir>/report``); ``baseline_batch``: the batch size changes are relative to
    (None, the default: each series' smallest ok batch size; a number: that batch size in every
    series, and series that did not run it get no changes);
    ``power_cell``: cell id (or unique prefix) of the power timeline (default: the ok cell with the
    highest output throughput that has power samples); ``jobs``: processes drawing the plots
    (1: draw them in this process); ``write_html``: also the interactive ``report.html``."""

    sweep_dir: str
    out_dir: str | None = None
    baseline_batch: int | None = None
    cost: CostAssumptions = field(default_factory=CostAssumptions)
    slo: Slo = field(default_factory=Slo)
    power_cell: str | None = None
    write_csv: bool = True
    write_html: bool = True  # report.html beside report.md (html_page.py)
    jobs: int = 1

    def resolved_out(self) -> str:
        if self.out_dir:
            return self.out_dir
        if "://" in self.sweep_dir:
            return "report_" + self.sweep_dir.rstrip("/").rsplit("/", 1)[-1]
        return self.sweep_dir.rstrip("/") + "/report"
