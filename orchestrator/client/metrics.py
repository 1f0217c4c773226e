"""Per-cell request metrics (docs/architecture.md, "What a cell measures"), computed from what
the engine recorded.

Definitions (all times in seconds on the cell's clock; latencies reported in ms):
- TTFT = first token - **scheduled** arrival (queueing before the send is not hidden).
- TPOT = (end - first token) / (output tokens - 1), for requests with >= 2 output tokens.
- ITL = gaps between consecutive **tokens** (a chunk of k tokens contributes k-1 zero gaps).
  Where no request has per-token times (a server that names neither token ids nor continuous
  usage), ITL is the gaps between its content **chunks** and ``itl_basis`` says ``chunk``
  (``token`` otherwise; None without either).
- E2E = end - scheduled arrival.
- The measured window is [window_start_s, window_end_s]. Throughputs count what happened inside
  it: output tokens emitted in it by any request (by per-token time; offline engines that give no
  per-token times count a request's tokens at its end: the GPU's work in the window, matched to
  its energy), and **measured** requests completed in it: warm-up is never served (a warm-up
  request finishing in the window is load, not a completion). So ``request_throughput_rps`` of an
  open loop that keeps up is the offered rate less about ``E2E / window`` (the requests still in
  flight when the window closes); energy per request does not use this count (``tables``).
- Prefix cache: ``cached_tokens`` per request as the engine reports it (vLLM's
  ``num_cached_tokens`` / ``usage.prompt_tokens_details.cached_tokens``, the simulator's model);
  ``prefix_cache_hit_rate`` = cached / prompt tokens over the measured ok requests that report
  it (NaN where none does); ``prompt_tokens_in_window``: prompt tokens of the requests whose
  first token came in the window (their prefill was done by then), for J per prompt token.
- ``achieved_rate_rps``: measured requests actually **sent** in the window per second (is the
  client keeping to the schedule?); ``scheduled_rate_rps``: measured arrivals scheduled in it.
- ``saturated``: measured completions in the window fall under 95% of what a server keeping up
  completes (the arrivals scheduled in it less those of its last E2E) by more than chance
  (``completion_shortfall``), TTFT grows
  through the window (``ttft_growing``), or a request was still unfinished at the drain limit
  (``n_requests_cancelled`` > 0; cancelled requests count the tokens they emitted in the window
  but no latency).
- Offline: ``batch_output_tok_s_cv`` is the coefficient of variation (sample std / mean) of the
  measured batches' output tok/s, each over its own wall time (NaN under two batches).
- Output tokens come from the engine (token ids or usage), or, for a server that reports
  neither, from its streamed text under the model's tokenizer (``token_count_source=tokenized``);
  never from chunk counts. With ``ignore_eos`` every ok request must have exactly the tokens
  asked for, else the cell is flagged ``token_count_mismatch``.
- The client's own lateness (open loop): a request's send lag is its send time minus its
  scheduled arrival; ``send_lag_p50_ms``/``p99``/``max`` over the measured requests sent, and
  ``client_lagging`` when the p99 exceeds ``CLIENT_LAG_P99_MS``: TTFT and E2E then include
  time the client, not the server, lost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from orchestrator.core.steps import StepTimeline
from orchestrator.errors import first_line
from orchestrator.store.schema import (
    ACHIEVED_RATE_RPS,
    CACHED_TOKENS_PER_REQUEST_MEAN,
    CLIENT_LAG_P99_MS,
    CLIENT_LAGGING,
    INPUT_TOKENS_PER_REQUEST_MEAN,
    MEAN_RUNNING_BATCH,
    N_REQUESTS_CANCELLED,
    N_REQUESTS_COMPLETED_IN_WINDOW,
    N_REQUESTS_DRAINED,
    N_REQUESTS_FAILED,
    N_REQUESTS_MEASURED,
    N_REQUESTS_OK,
    N_REQUESTS_TOTAL,
    OFFERED_RATE_RPS,
    OUTPUT_THROUGHPUT_TOK_S,
    OUTPUT_TOKENS_IN_WINDOW,
    OUTPUT_TOKENS_PER_REQUEST_MEAN,
    PREFIX_CACHE_HIT_RATE,
    PROMPT_TOKENS_IN_WINDOW,
    REQUEST_THROUGHPUT_RPS,
    SATURATED,
    TOKEN_COUNT_MISMATCH,
    WINDOW_S,
)

PERCENTILES = (50, 90, 99)
SATURATION_RATIO = 0.95


@dataclass
class RequestRecord:
    """What an engine observed for one request (times on the cell's clock, seconds)."""

    index: int
    phase: str
    arrival_s: float  # scheduled (closed loop: the send time)
    send_s: float
    first_token_s: float
    end_s: float
    input_tokens: int
    output_tokens: int
    requested_output_tokens: int
    token_times_s: Optional[np.ndarray] = None  # one time per output token, when known
    status: str = "ok"  # ok | error | cancelled (unfinished at the drain limit: what was observed)
    error: str = ""
    batch_index: int = -1
    prompt_hash: str = ""  # models.prompt_digest of the prompt's token ids ("" when none was built)
    chunk_times_s: Optional[np.ndarray] = None  # arrival of each content chunk (streaming clients)
    prompt_tokens_reported: Optional[int] = None  # the server's usage.prompt_tokens, when it said
    count_source: str = ""  # how output_tokens was known: usage | token_ids | continuous_usage | tokenized ('' engine)
    cached_tokens: Optional[int] = None  # prompt tokens served from the prefix cache (None: not reported)
    session: int = -1  # multi-turn: the request's session (-1: none)
    turn: int = 0  # multi-turn: its turn in the session


@dataclass
class WindowRun:
    """An engine's account of one cell's workload."""

    records: List[RequestRecord]
    window_start_s: float
    window_end_s: float
    mean_running_batch: Optional[float] = None  # from the engine's own metrics, if any
    extra: Dict = field(default_factory=dict)
    batch_bounds_s: Optional[List[Tuple[float, float]]] = None  # offline: (start, end) of each measured batch
    drain_timeout_s: Optional[float] = None  # open/closed loop: the drain limit applied
    drain_s: Optional[float] = None  # seconds from the window's end until the last request ended or was cancelled
    failure: Optional[Tuple[str, str]] = None  # (status, error): the cell failed, its request rows kept
    steps: Optional[StepTimeline] = None  # the engine's steps, where it records them (core.steps)


def _pct(values: Union[Sequence[float], np.ndarray], prefix: str, scale: float = 1e3) -> Dict[str, float]:
    """p50/p90/p99/mean in ms; NaNs (a time the engine could not give) are left out."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    out = {}
    for p in PERCENTILES:
        out[f"{prefix}_p{p}_ms"] = float(np.percentile(arr, p) * scale) if arr.size else float("nan")
    out[f"{prefix}_mean_ms"] = float(arr.mean() * scale) if arr.size else float("nan")
    return out


def tokens_in_window(rec: RequestRecord, t0: float, t1: float) -> int:
    """Output tokens ``rec`` emitted in [t0, t1]: by token time when known (a cancelled request
    counts the ones it emitted), else all at its end (ok requests only)."""
    if rec.status == "cancelled" and rec.token_times_s is not None:
        tt = np.asarray(rec.token_times_s)
        return int(np.count_nonzero((tt >= t0) & (tt <= t1)))
    if rec.status != "ok":
        return 0
    if rec.token_times_s is not None and len(rec.token_times_s):
        tt = np.asarray(rec.token_times_s)
        return int(np.count_nonzero((tt >= t0) & (tt <= t1)))
    return rec.output_tokens if t0 <= rec.end_s <= t1 else 0


def completion_shortfall(n_completed: int, n_scheduled: int, window_s: float, e2e_s: float) -> bool:
    """Do the measured completions in the window fall short of what a server keeping up completes?

    A server that keeps up completes, within the window, the measured arrivals of all but its last
    ``e2e_s`` seconds (``edge_e2e_s``): of ``n_scheduled`` arrivals a binomial share
    ``1 - e2e_s / window_s`` (standard deviation sqrt(n p (1 - p))). Short of ``SATURATION_RATIO`` x
    that mean minus two deviations: saturated. (Counting every completion in the window instead,
    warm-up ones included, let a saturated cell whose completions were all warm-up look served.)
    In 4,000 simulated Poisson windows each (``scripts/bench_saturation_rule.py``,
    ``experiments/benchmarks/saturation_rule/``) a server keeping up is flagged in 0.95% (10 s at
    4 req/s, 1.2 s per request), 0.00% (30 s at 10 req/s, 2 s) and 0.00% (60 s at 20 req/s, 3 s);
    a FIFO server at 80% of the offered rate in 63%, 87% and 100%: a short window of few requests
    cannot tell 80% from 100% by its count, and there a queue that grows is caught by
    ``ttft_growing`` and the drain's cancellations."""
    p = min(max(e2e_s, 0.0) / max(window_s, 1e-9), 1.0)
    expected = n_scheduled * (1.0 - p)
    margin = 2.0 * math.sqrt(n_scheduled * p * (1.0 - p))
    return n_completed < SATURATION_RATIO * expected - margin


def edge_e2e_s(arrivals_s: np.ndarray, e2e_s: np.ndarray, window_s: float) -> float:
    """The latency of the window's closing edge, for ``completion_shortfall``: the median E2E (s)
    of the completed requests that arrived in the window's first third (``arrivals_s`` from its
    start): a queue that builds up later must not excuse its own missing completions; at most a
    quarter of the window; 0 without completions."""
    if not e2e_s.size:
        return 0.0
    early = e2e_s[arrivals_s <= window_s / 3]
    return min(float(np.median(early if early.size else e2e_s)), window_s / 4)


def ttft_growing(arrivals: np.ndarray, ttfts: np.ndarray) -> bool:
    """TTFT grows through the window: the median of the last third exceeds twice the first
    third's and by more than 100 ms (a queue that never drains)."""
    if ttfts.size < 9:
        return False
    order = np.argsort(arrivals)
    third = ttfts.size // 3
    first, last = np.median(ttfts[order[:third]]), np.median(ttfts[order[-third:]])
    return bool(last > 2 * first and last - first > 0.1)


def summarize(run: WindowRun, offered_rate_rps: Optional[float], ignore_eos: bool) -> Dict:
    """The request-side columns of the ``runs`` row."""
    t0, t1 = run.window_start_s, run.window_end_s
    window_s = max(t1 - t0, 1e-9)
    recs = run.records
    measured = [r for r in recs if r.phase == "measured"]
    ok = [r for r in measured if r.status == "ok"]
    completed_in_window = [r for r in measured if r.status == "ok" and t0 <= r.end_s <= t1]
    out_tokens = sum(tokens_in_window(r, t0, t1) for r in recs)
    in_tokens = sum(r.input_tokens for r in completed_in_window)
    cancelled = [r for r in recs if r.status == "cancelled"]
    ttft = np.array([r.first_token_s - r.arrival_s for r in ok])
    tokens_per_req = np.array([r.output_tokens for r in ok])
    decode_overlap = sum(max(0.0, min(r.end_s, t1) - max(r.first_token_s, t0)) for r in recs
                         if r.status in ("ok", "cancelled") and not np.isnan(r.first_token_s))
    row = {
        "window_start_s": t0,
        "window_end_s": t1,
        WINDOW_S: window_s,
        N_REQUESTS_TOTAL: len(recs),
        N_REQUESTS_MEASURED: len(measured),
        N_REQUESTS_OK: len(ok),
        N_REQUESTS_FAILED: sum(1 for r in measured if r.status == "error"),
        N_REQUESTS_CANCELLED: len(cancelled),
        "drain_timeout_s": run.drain_timeout_s,
        "drain_s": run.drain_s,
        N_REQUESTS_DRAINED: sum(1 for r in ok if r.end_s > t1),
        N_REQUESTS_COMPLETED_IN_WINDOW: len(completed_in_window),
        REQUEST_THROUGHPUT_RPS: len(completed_in_window) / window_s,
        OUTPUT_TOKENS_IN_WINDOW: int(out_tokens),
        OUTPUT_THROUGHPUT_TOK_S: out_tokens / window_s,
        "total_throughput_tok_s": (out_tokens + in_tokens) / window_s,
        OUTPUT_TOKENS_PER_REQUEST_MEAN: float(tokens_per_req.mean()) if tokens_per_req.size else float("nan"),
        INPUT_TOKENS_PER_REQUEST_MEAN: float(np.mean([r.input_tokens for r in ok])) if ok else float("nan"),
        PROMPT_TOKENS_IN_WINDOW: int(sum(r.input_tokens for r in recs if r.status in ("ok", "cancelled")
                                         and t0 <= r.first_token_s <= t1)),
        **prefix_cache(ok),
        TOKEN_COUNT_MISMATCH: bool(ignore_eos and any(r.output_tokens != r.requested_output_tokens for r in ok)),
        MEAN_RUNNING_BATCH: (
            float(run.mean_running_batch) if run.mean_running_batch is not None else decode_overlap / window_s
        ),
    }
    row.update(_rates(measured, ok, completed_in_window, ttft, t0, t1, offered_rate_rps))
    row[SATURATED] = bool(row[SATURATED] or cancelled)
    row.update(_latencies(ok, ttft))
    row.update(batch_stability(recs, run.batch_bounds_s))
    return row


def prefix_cache(ok: List[RequestRecord]) -> Dict:
    """Hit rate (cached / prompt tokens) and mean cached tokens of the measured ok requests that
    report cached tokens; NaN where none does."""
    known = [r for r in ok if r.cached_tokens is not None]
    prompt = sum(r.input_tokens for r in known)
    cached = sum(r.cached_tokens or 0 for r in known)
    return {PREFIX_CACHE_HIT_RATE: cached / prompt if prompt else float("nan"),
            CACHED_TOKENS_PER_REQUEST_MEAN: cached / len(known) if known else float("nan")}


def empty_window_failure(records: Sequence[RequestRecord]) -> Optional[Tuple[str, str]]:
    """(status, error) for a window in which requests were measured but none completed ok (every
    one failed or was cancelled at the drain limit): such a cell is never ``ok``. None otherwise
    (a window with some ok requests, or with none measured, is judged elsewhere)."""
    measured = [r for r in records if r.phase == "measured"]
    if not measured or any(r.status == "ok" for r in measured):
        return None
    cancelled = sum(r.status == "cancelled" for r in measured)
    failed = [r for r in measured if r.status == "error"]
    first = f" (first error: {first_line(failed[0].error)})" if failed and failed[0].error else ""
    return ("engine_error", f"no measured request completed ok: {cancelled} of {len(measured)} cancelled at the "
            f"drain limit (workload.drain_timeout_s), {len(failed)} failed{first}")


def batch_stability(recs: List[RequestRecord], bounds: Optional[List[Tuple[float, float]]]) -> Dict:
    """Offline: how many batches were measured and the CV of their output tok/s (each batch's
    output tokens over its own wall time, s)."""
    if not bounds:
        return {"n_batches_measured": None, "batch_output_tok_s_cv": float("nan")}
    tokens: Dict[int, int] = {}
    for r in recs:  # every measured batch (one without an ok request: 0 tokens), in bounds' order
        if r.phase == "measured":
            tokens[r.batch_index] = tokens.get(r.batch_index, 0) + (r.output_tokens if r.status == "ok" else 0)
    batches = sorted(tokens)
    rates = np.array([tokens[b] / max(end - start, 1e-9) for b, (start, end) in zip(batches, bounds)])
    cv = float(rates.std(ddof=1) / rates.mean()) if rates.size >= 2 and rates.mean() > 0 else float("nan")
    return {"n_batches_measured": len(bounds), "batch_output_tok_s_cv": cv}


def _rates(measured: List[RequestRecord], ok: List[RequestRecord], completed: List[RequestRecord], ttft: np.ndarray,
           t0: float, t1: float, offered_rate_rps: Optional[float]) -> Dict:
    """Offered, scheduled and achieved arrival rates (req/s) and the saturation flag: against the
    schedule actually drawn (a Poisson draw of a short window differs from the nominal rate by
    chance), completions must keep up and TTFT must not grow."""
    nan = float("nan")
    if not offered_rate_rps:
        return {OFFERED_RATE_RPS: nan, "scheduled_rate_rps": nan, ACHIEVED_RATE_RPS: nan, SATURATED: False,
                **send_lag(measured, open_loop=False)}
    window_s = max(t1 - t0, 1e-9)
    n_scheduled = sum(1 for r in measured if t0 <= r.arrival_s <= t1)
    if math.isnan(offered_rate_rps):  # multi-turn sessions: what was scheduled in the window is what it offered
        offered_rate_rps = n_scheduled / window_s
    e2e_s = edge_e2e_s(np.array([r.arrival_s - t0 for r in completed]),
                       np.array([r.end_s - r.arrival_s for r in completed]), window_s)
    saturated = completion_shortfall(len(completed), n_scheduled, window_s, e2e_s) or ttft_growing(
        np.array([r.arrival_s for r in ok]), ttft)
    scheduled_rate = n_scheduled / window_s
    return {OFFERED_RATE_RPS: float(offered_rate_rps), "scheduled_rate_rps": scheduled_rate,
            ACHIEVED_RATE_RPS: sum(1 for r in measured if t0 <= r.send_s <= t1) / window_s,
            SATURATED: bool(saturated), **send_lag(measured, open_loop=True)}


def send_lag(measured: List[RequestRecord], open_loop: bool) -> Dict:
    """Send lag p50/p99/max (ms) of the measured requests sent, and ``client_lagging``; NaN and
    False where there is no schedule to lag behind (closed loop, offline)."""
    lag = np.array([r.send_s - r.arrival_s for r in measured if not math.isnan(r.send_s)], dtype=float) * 1e3
    if not open_loop or not lag.size:
        nan = float("nan")
        return {"send_lag_p50_ms": nan, "send_lag_p99_ms": nan, "send_lag_max_ms": nan, CLIENT_LAGGING: False}
    p99 = float(np.percentile(lag, 99))
    return {"send_lag_p50_ms": float(np.percentile(lag, 50)), "send_lag_p99_ms": p99,
            "send_lag_max_ms": float(lag.max()), CLIENT_LAGGING: p99 > CLIENT_LAG_P99_MS}


def inter_token_gaps(ok: List[RequestRecord]) -> Tuple[List[np.ndarray], Optional[str]]:
    """ITL gaps (s) per request and their basis: ``token`` from per-token times; ``chunk`` from
    chunk arrivals where no request has per-token times; None where there is neither."""
    if any(r.token_times_s is not None for r in ok):
        return [np.diff(r.token_times_s) for r in ok if r.token_times_s is not None and len(r.token_times_s) > 1], "token"
    chunks = [np.diff(r.chunk_times_s) for r in ok if r.chunk_times_s is not None and len(r.chunk_times_s) > 1]
    return chunks, ("chunk" if chunks else None)


def _latencies(ok: List[RequestRecord], ttft: np.ndarray) -> Dict:
    """TTFT, TPOT, ITL and E2E p50/p90/p99/mean in ms over the ok measured requests."""
    e2e = np.array([r.end_s - r.arrival_s for r in ok])
    tpot = [(r.end_s - r.first_token_s) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    itl, basis = inter_token_gaps(ok)
    out: Dict = {"itl_basis": basis}
    out.update(_pct(ttft, "ttft"))
    out.update(_pct(tpot, "tpot"))
    out.update(_pct(np.concatenate(itl) if itl else np.array([]), "itl"))
    out.update(_pct(e2e, "e2e"))
    return out
