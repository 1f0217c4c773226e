"""Where the plots are drawn: worker processes (``jobs`` > 1) or this process.

Drawing PNGs is most of a large report's time and each plot is independent, so with ``jobs`` > 1
a pool of ``spawn``ed processes (no fork of a multi-threaded Arrow process) starts at once and
imports matplotlib while this process reads and analyses the sweep; plots are then submitted
to it and drawn while this process writes the Markdown and CSV files.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor


def warm_up() -> bool:
    """Import the plotting stack in a worker (its first task)."""
    import orchestrator.analysis.plots  # noqa: F401

    return True


class InProcess(Executor):
    """An executor that runs each call at submit time (``jobs`` = 1)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


def plot_executor(jobs: int) -> Executor:
    """A started pool of ``jobs`` processes, or ``InProcess`` for ``jobs`` <= 1."""
    if jobs <= 1:
        return InProcess()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    for _ in range(jobs):
        pool.submit(warm_up)
    return pool
