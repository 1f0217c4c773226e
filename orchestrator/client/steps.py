"""Engine steps reconstructed from the per-token timestamps a client recorded, for engines that
give no step records of their own (a server measured over HTTP, the hf engine).

Every output token a request received is an event (its arrival time, the request). A step
emits one token to each request in it, all in one batch of chunks, so the events of one step
arrive together: events less than ``STEP_JOIN_S`` after the previous one join its step, unless
their request already has a token in it from earlier (two steps read back to back). A step's
end is its last event; its start is the previous step's end, or, after a gap (the engine was
idle: more than ``BUSY_GAP`` busy step lengths after it), its end less the median step length
of the busy stretches. A request's first token closes
its prefill: that step computed its prompt (``input_tokens`` less ``cached_tokens``, the whole
prompt even where the engine chunked it over earlier steps); each later token is one decode
token (a chunk that carries k tokens counts k). Requests without per-token times (an offline
engine's) are left out; with none at all there is nothing to reconstruct (None).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from orchestrator.client.metrics import RequestRecord
from orchestrator.core.steps import StepRecorder, StepTimeline

STEP_JOIN_S = 0.002
"""Events closer than this (s) belong to one step: a step's chunks reach the client within a
fraction of a millisecond of each other, and a 7B model's decode step lasts 5 ms or more."""

BUSY_GAP = 1.5
"""A step that ends within this many busy step lengths of the previous one ran right after it."""


def reconstruct_steps(records: Sequence[RequestRecord], join_s: float = STEP_JOIN_S) -> Optional[StepTimeline]:
    """The steps behind ``records``' token times (see module doc); None without any."""
    times: List[np.ndarray] = []
    owners: List[np.ndarray] = []
    prefill: List[np.ndarray] = []
    firsts: List[np.ndarray] = []
    for r in records:
        tt = r.token_times_s
        if tt is None or not len(tt) or r.status not in ("ok", "cancelled"):
            continue
        n = len(tt)
        times.append(np.asarray(tt, dtype=float))
        owners.append(np.full(n, r.index, dtype=np.int64))
        first = np.zeros(n, dtype=bool)
        first[0] = True
        firsts.append(first)
        # the prompt less what the cache held (at least its last token, always computed)
        prefill.append(np.where(first, max(1, int(r.input_tokens) - int(r.cached_tokens or 0)), 0))
    if not times:
        return None
    order = np.argsort(np.concatenate(times), kind="stable")  # stable: a request's first token stays first
    t, who = np.concatenate(times)[order], np.concatenate(owners)[order]
    pre, decode = np.concatenate(prefill)[order], (~np.concatenate(firsts)[order]).astype(np.int64)
    new_step = np.concatenate([[True], np.diff(t) >= join_s])
    _split_repeats(new_step, who, t)
    bounds = np.flatnonzero(new_step).tolist() + [t.size]
    ends = np.array([t[b - 1] for b in bounds[1:]])
    length = _busy_step_s(ends)
    rec = StepRecorder("reconstructed")
    prev_end = -np.inf
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        end = float(ends[k])
        back_to_back = np.isfinite(prev_end) and end - prev_end <= BUSY_GAP * length
        start = prev_end if back_to_back else end - length
        entries: Dict[int, List[int]] = {}
        for w, p, d in zip(who[a:b].tolist(), pre[a:b].tolist(), decode[a:b].tolist()):
            q = entries.setdefault(w, [0, 0])
            q[0] += p
            q[1] += d
        rec.add(start, end, [(w, p, d) for w, (p, d) in entries.items()])
        prev_end = end
    return rec.timeline()


def _split_repeats(new_step: np.ndarray, who: np.ndarray, t: np.ndarray) -> None:
    """Start a new step where a request that already has a token in the current one comes again
    later (two steps read back to back, closer than the join window), in place."""
    seen: Dict[int, float] = {}
    for i, w in enumerate(who.tolist()):
        if new_step[i]:
            seen = {}
        elif w in seen and t[i] > seen[w]:
            new_step[i] = True
            seen = {}
        seen[w] = t[i]


def _busy_step_s(ends: np.ndarray) -> float:
    """The median gap between consecutive step ends where steps ran back to back (gaps no longer
    than ``BUSY_GAP`` x the median gap): the length of a busy step."""
    gaps = np.diff(ends)
    if not gaps.size:
        return 0.0
    med = float(np.median(gaps))
    busy = gaps[gaps <= BUSY_GAP * med]
    return float(np.median(busy)) if busy.size else med
