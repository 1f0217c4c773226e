"""vLLM's own engine steps, recorded in its engine-core process by a scheduler class that adds a
log to vLLM's (``--scheduler-cls orchestrator.engines.vllm.step_recorder.RecordingScheduler``;
the scheduler interface is not public: written against vLLM 0.26's ``AsyncScheduler``).

Each step is one JSON line in the file ``$ORCHESTRATOR_STEPS_FILE`` (appended; several cells of a
shared server read their own time range): ``[t_scheduled, t_done, [[request_id, prefill, decode],
...]]`` — the ``time.monotonic()`` seconds at which the step was scheduled and at which its output
reached the scheduler (``update_from_output``), and per request the prompt tokens computed
(prefill, cached tokens excluded) and the other tokens (decode). With async scheduling (vLLM's
default) step k+1 is scheduled while step k runs, so a step ran from ``max(t_scheduled, previous
t_done)`` to its ``t_done`` (``read_steps``). Lines are buffered and written when
``FLUSH_STEPS`` are waiting or the engine has nothing left to run.

This module imports vLLM only when the class is asked for (module ``__getattr__``), so the
engine registry, which imports every module of the package, never imports vLLM.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from orchestrator.core.steps import StepRecorder, StepTimeline

STEPS_FILE_ENV = "ORCHESTRATOR_STEPS_FILE"
SCHEDULER_CLS = "orchestrator.engines.vllm.step_recorder.RecordingScheduler"
SYNC_SCHEDULER_CLS = "orchestrator.engines.vllm.step_recorder.RecordingSyncScheduler"
"""With ``async_scheduling`` turned off (``engine.vllm.extra_args``): vLLM's plain ``Scheduler``."""
FLUSH_STEPS = 256

_classes: Dict[str, type] = {}


def __getattr__(name: str):
    if name not in ("RecordingScheduler", "RecordingSyncScheduler"):
        raise AttributeError(name)
    if name not in _classes:
        _classes[name] = _build(name == "RecordingScheduler")
    return _classes[name]


def _split(request, n: int) -> Tuple[int, int]:
    """(prefill, decode) tokens of ``n`` scheduled for ``request`` (already advanced by them): the
    prompt tokens it computes are prefill; so is recomputing generated tokens after a preemption
    (``num_computed_tokens`` went back to 0: more than one new token at once past the prompt);
    one new token past the prompt (or a few speculative ones) is decode."""
    before = int(request.num_computed_tokens) - n
    prompt = int(request.num_prompt_tokens)
    prefill = max(0, min(n, prompt - before))
    rest = n - prefill
    if rest > 1 + len(getattr(request, "spec_token_ids", None) or ()):  # a recompute, not a decode step
        return n, 0
    return prefill, rest


def _build(async_scheduling: bool) -> type:
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    base = AsyncScheduler if async_scheduling else Scheduler

    class RecordingScheduler(base):  # type: ignore[valid-type, misc]
        """vLLM's scheduler, logging every step (see module doc)."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._steps_path = os.environ.get(STEPS_FILE_ENV, "")
            self._pending: Dict[int, Tuple[float, List]] = {}
            self._lines: List[str] = []

        def schedule(self, *args, **kwargs):
            out = super().schedule(*args, **kwargs)
            if self._steps_path and out.num_scheduled_tokens:
                t = time.monotonic()
                entries = [[req_id, *_split(self.requests[req_id], n)]
                           for req_id, n in out.num_scheduled_tokens.items()]
                self._pending[id(out)] = (t, entries)
            return out

        def update_from_output(self, scheduler_output, model_runner_output):
            result = super().update_from_output(scheduler_output, model_runner_output)
            step = self._pending.pop(id(scheduler_output), None)
            if step is not None:
                self._lines.append(json.dumps([step[0], time.monotonic(), step[1]]))
            # written when the engine runs dry too (e.g. after aborts), so a cell reads all its steps
            if self._lines and (len(self._lines) >= FLUSH_STEPS or not self.has_unfinished_requests()):
                self._flush()
            return result

        def finish_requests(self, *args, **kwargs):
            result = super().finish_requests(*args, **kwargs)
            if self._lines and not self.has_unfinished_requests():  # the last requests were aborted
                self._flush()
            return result

        def _flush(self) -> None:
            with open(self._steps_path, "a", encoding="utf-8") as f:
                f.write("\n".join(self._lines) + "\n")
            self._lines = []

    return RecordingScheduler


def new_steps_file(log_dir: Path) -> Path:
    """A fresh steps file beside the engine's logs."""
    path = Path(log_dir) / f"vllm-steps-{os.getpid()}-{time.monotonic_ns()}.jsonl"
    path.write_text("")
    return path


SERVER_ID = re.compile(r"(orch\d*)-(\d+)")


def server_request_index(request_id: str, prefix: str = "orch") -> Optional[int]:
    """The plan's request index in a server request id: the client sends ``<prefix>-<index>``
    (a shared server's cells each their own prefix, so a straggler of the previous cell never
    passes for this one's request)."""
    m = SERVER_ID.search(request_id)
    return int(m.group(2)) if m and m.group(1) == prefix else None


def read_steps(path: Path, t0_s: float, t1_s: float, index_of: Callable[[str], Optional[int]],
               wanted: Sequence[int]) -> Optional[StepTimeline]:
    """The steps in ``path`` that ran in [t0_s, t1_s] holding at least one of the ``wanted``
    requests (by plan index, from vLLM's request ids through ``index_of``); None without any."""
    wanted_set = set(int(i) for i in wanted)
    rec = StepRecorder("engine")
    prev_done = float("-inf")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            t_sched, t_done, entries = json.loads(line)
        except ValueError:  # blank, or a line still being written
            continue
        start = max(float(t_sched), prev_done)
        prev_done = float(t_done)
        if t_done < t0_s or start > t1_s:
            continue
        mine: List[Tuple[int, int, int]] = []
        for rid, prefill, decode in entries:
            i = index_of(rid)
            if i is not None and i in wanted_set:
                mine.append((i, int(prefill), int(decode)))
        rec.add(start, float(t_done), mine)
    timeline = rec.timeline()
    return timeline if len(timeline) else None


def logged_steps(path: Optional[Path], records, index_of: Callable[[str], Optional[int]]) -> Optional[StepTimeline]:
    """The logged steps that ran while a cell's ``records`` did (None without a log or steps)."""
    sends = [r.send_s for r in records if r.send_s == r.send_s]  # NaN: never sent
    if path is None or not sends:
        return None
    return read_steps(path, min(sends), max(r.end_s for r in records), index_of, [r.index for r in records])
