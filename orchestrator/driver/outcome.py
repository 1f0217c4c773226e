"""What a sweep ended with: every cell's final status, and for the cells launched in this run
that did not end ``ok``, their status and the first line of the reason — for the console's
closing lines and the command's exit status.

Exit statuses (``python -m orchestrator``): ``EXIT_OK`` (0) when every cell launched in this run
ended ok (cells decided before launch — unsupported, infeasible — and cells already complete in
the store do not count); ``EXIT_FAILED_CELLS`` (3) when the sweep finished but some launched cell
did not end ok; ``EXIT_BAD_INPUT`` (2) for bad input, before any GPU work; ``EXIT_INTERRUPTED``
(130) for Ctrl-C / SIGTERM (what finished is kept)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_FAILED_CELLS = 3
EXIT_INTERRUPTED = 130
MAX_REASONS = 5
"""Distinct reasons shown per failure status; the store command lists every cell."""


@dataclass
class SweepOutcome:
    """``counts``: final status -> number of cells (all of the sweep's cells); ``failures``: cell id
    -> (status, first line of the reason) of each cell launched in this run that did not end ok."""

    location: str
    counts: Counter = field(default_factory=Counter)
    failures: Dict[str, Tuple[str, str]] = field(default_factory=dict)

    def exit_code(self) -> int:
        return EXIT_FAILED_CELLS if self.failures else EXIT_OK

    def summary_lines(self, max_reasons: int = MAX_REASONS) -> List[str]:
        """Each failure status with its count and its distinct reasons (the most frequent
        ``max_reasons``), then the command that lists every failed cell; [] when none failed."""
        if not self.failures:
            return []
        lines = [f"{len(self.failures)} launched cells did not end ok:"]
        by_status = Counter(status for status, _ in self.failures.values())
        for status, n in by_status.most_common():
            reasons = Counter(reason for s, reason in self.failures.values() if s == status)
            lines.append(f"  {n} {status}:")
            lines += [f"    {k} × {reason}" for reason, k in reasons.most_common(max_reasons)]
            if len(reasons) > max_reasons:
                lines.append(f"    ... and {len(reasons) - max_reasons} other reasons")
        lines.append(f"every failed cell with its reason: python -m orchestrator.store {self.location} --failed")
        return lines
