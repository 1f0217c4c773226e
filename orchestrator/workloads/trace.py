"""``workload.source=trace``: a timed trace (Mooncake JSONL, Azure CSV) replayed open-loop.

Timing: the recorded arrivals divided by ``speedup``, or re-timed so that the whole trace's mean
rate is ``rate_rps`` (every gap scaled alike: the trace's burstiness kept). The slice: the window
opens at the first request at or after ``start_s`` (replayed seconds), and at least
``workload.warmup_requests`` requests in (those just before it are the warm-up, replayed at their
own times); it lasts ``workload.duration_s``, or ends one mean gap after the trace's last request
where the trace ends first. Requests after the window are not sent. The offered rate is the
trace's own: the window's requests over its length (``plan.offered_rate_rps``).

Prompts: a Mooncake request's ``hash_ids`` are its blocks, ``block_tokens`` tokens each, seeded by
the hash id (the same tokens wherever the id recurs: the trace's own prefix sharing); a
request's last block is cut to its ``input_length``, and what lies past its blocks is its own.
An Azure request's prompt is all its own. Lengths are clipped to the context (the output to half
of it, the input to what is left; ``notes``: ``trace_requests_clipped``).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from orchestrator.client.trace_files import TraceFileError, TraceRequest
from orchestrator.client.workload import SEGMENT_BLOCK, SEGMENT_UNIQUE, RequestSpec, Segment, WorkloadPlan
from orchestrator.config.groups import Arrival
from orchestrator.config.workload_sources import Source, TraceSource
from orchestrator.workloads import register_source
from orchestrator.workloads.context import SourceContext, load_trace


def replay_times(requests: Sequence[TraceRequest], opts: TraceSource) -> np.ndarray:
    """Each request's replayed arrival (s from the trace's first request)."""
    t = np.array([r.arrival_s for r in requests], dtype=float)
    if opts.rate_rps is not None and len(t) > 1 and t[-1] > 0:
        return t * ((len(t) - 1) / t[-1]) / float(opts.rate_rps)
    return t / float(opts.speedup)


def window_slice(times: np.ndarray, start_s: float, n_warmup: int, duration_s: float) -> Tuple[int, int, int, float]:
    """(first warm-up, first measured, past the last measured, window length s) of a slice."""
    n = len(times)
    i0 = max(int(np.searchsorted(times, start_s, side="left")), n_warmup)
    if i0 >= n:
        raise TraceFileError(f"the trace has {n} requests: none left for the window after start_s={start_s:g} s "
                             f"and {n_warmup} warm-up requests")
    mean_gap = (times[-1] - times[0]) / max(n - 1, 1)
    end = min(times[i0] + duration_s, times[-1] + mean_gap) if n - i0 > 1 or mean_gap > 0 else times[i0] + duration_s
    i1 = int(np.searchsorted(times, end, side="left"))
    i1 = max(i1, i0 + 1)
    return max(0, i0 - n_warmup), i0, i1, max(end - times[i0], 1e-9)


def prompt_segments(req: TraceRequest, row: int, n_in: int, block: int) -> Tuple[Segment, ...]:
    """A request's prompt: its hash blocks (the last cut to ``n_in``), then its own tokens."""
    segs: List[Segment] = []
    used = 0
    for h in req.hash_ids:
        if used >= n_in:
            break
        n = min(block, n_in - used)
        segs.append(Segment((SEGMENT_BLOCK, int(h)), n, full_tokens=block))
        used += n
    if used < n_in:
        segs.append(Segment((SEGMENT_UNIQUE, row), n_in - used))
    return tuple(segs)


@register_source(Source.trace)
def trace_plan(ctx: SourceContext) -> WorkloadPlan:
    wl, opts = ctx.workload, ctx.workload.trace
    requests = load_trace(opts.path, opts.format, opts.sha256)
    times = replay_times(requests, opts)
    first, i0, i1, window_s = window_slice(times, float(opts.start_s), int(wl.warmup_requests), float(wl.duration_s))
    t0 = times[first]
    specs, clipped = [], 0
    out_cap = max(1, ctx.context_tokens // 2)
    for k, row in enumerate(range(first, i1)):
        req = requests[row]
        n_out = max(1, min(req.output_tokens, out_cap))
        n_in = max(1, min(req.input_tokens, ctx.context_tokens - n_out))
        clipped += (n_in, n_out) != (req.input_tokens, req.output_tokens)
        specs.append(RequestSpec(k, "warmup" if row < i0 else "measured", float(times[row] - t0), n_in, n_out,
                                 segments=prompt_segments(req, row, n_in, int(opts.block_tokens))))
    n_measured = i1 - i0
    plan = WorkloadPlan(
        arrival=Arrival(wl.arrival), batch_size=ctx.batch_size, requests=specs, rate_rps=n_measured / window_s,
        concurrency=ctx.batch_size, duration_s=window_s, measured_start_s=float(times[i0] - t0),
        ignore_eos=bool(wl.ignore_eos), seed=ctx.seed, prompt_key=ctx.seed, drain_timeout_s=ctx.drain_timeout_s,
        workload=wl, offered_rate_rps=n_measured / window_s,
    )
    plan.notes.update(trace_requests=len(requests), trace_first_row=i0, trace_rows_measured=n_measured,
                      trace_requests_clipped=clipped, trace_time_scale=float(times[-1] / requests[-1].arrival_s)
                      if requests[-1].arrival_s > 0 else 1.0)
    return plan
