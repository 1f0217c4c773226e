"""The bounded drain of an open/closed-loop cell (docs/architecture.md, "What a cell measures").

When the measured window closes, requests still queued or running get ``drain_timeout_s`` more
seconds; then their tasks are cancelled. A request task catches the cancellation itself, closes
its stream (so the server aborts the request) and returns a ``cancelled`` record holding what it
observed. Times are ``time.monotonic()`` seconds.
"""
from __future__ import annotations

import asyncio
import time
from typing import Callable, Optional


async def drain(sent, window_end_s: float, drain_timeout_s: float, never_sent: Callable):
    """Wait for the requests ``sent`` ([(spec, scheduled s, task)]) until ``drain_timeout_s``
    after ``window_end_s`` (monotonic s), cancel those still running -> (records in send
    order, seconds from the window's end until the last one ended or was cancelled). A task
    cancelled before its first step gives ``never_sent(spec, scheduled s)``."""
    tasks = [t for _, _, t in sent]
    await bounded(tasks, lambda: window_end_s, drain_timeout_s)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    records = [never_sent(spec, t_sched) if isinstance(res, BaseException) else res
               for (spec, t_sched, _), res in zip(sent, results)]
    return records, max(0.0, time.monotonic() - window_end_s)


async def bounded(tasks, window_end: Callable[[], Optional[float]], drain_timeout_s: float) -> Optional[float]:
    """Wait for ``tasks``; once ``window_end()`` (monotonic s) is known, cancel what still runs
    ``drain_timeout_s`` after it. -> seconds from the window's end until all were done."""
    pending = set(tasks)
    while pending:
        end = window_end()
        timeout = 1.0 if end is None else max(0.0, end + drain_timeout_s - time.monotonic())
        _, pending = await asyncio.wait(pending, timeout=timeout)
        if pending and end is not None and time.monotonic() >= end + drain_timeout_s:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            break
    end = window_end()
    return None if end is None else max(0.0, time.monotonic() - end)
