"""Request generators: what to send, when (scheduled arrival, seconds from the plan's start).

Open loop (poisson | constant | gamma): ``warmup_requests`` at the rate, then every arrival in
the next ``duration_s`` is measured; requests still unfinished ``drain_timeout_s`` after the
window closes are cancelled. Closed loop: ``concurrency`` clients, each sending its next request
when the last one ends, for ``duration_s`` (arrival = send time, filled by the engine).
Offline: ``warmup_batches`` then static batches of exactly ``batch_size`` prompts: at least
``num_batches`` measured, more until the window reaches ``min_window_s`` (``BatchSchedule``).
Lengths are drawn per request from the workload's distributions; everything is deterministic for
``seed`` (+ the cell's repeat index). Prompts are random token ids seeded by the cell's identity
and the request index (``WorkloadPlan.prompt_ids``), so no two cells send the same prompt.

A cell's plan comes from ``orchestrator.workloads.plan_for``. Other sources (``workload.source``:
dataset, trace, sessions; ``orchestrator.workloads``) build
plans of the same types: a request's prompt is then a sequence of ``Segment`` s (a dataset row's
token ids, a trace's shared blocks, a session's history), seeded by the workload's seed instead
of the cell, so that cells that vary the engine (prefix caching on and off) send the same
prompts; a shared engine's prefix cache is reset between cells, so none borrows another's.
A session's later turns (``RequestSpec.turn`` > 0) have no scheduled time: each is sent
``think_s`` after its previous turn's answer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from orchestrator.client.model_files import prompt_token_ids
from orchestrator.config.groups import Arrival, LengthConfig, LengthDist, WorkloadConfig, WorkloadKind
from orchestrator.perf.roofline import request_seconds

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

DRAIN_FLOOR_S = 10.0  # the automatic drain limit is never shorter
DRAIN_REQUEST_MULTIPLE = 3.0  # ... and else this many expected request times
DRAIN_EFFICIENCY = 0.5  # the expected request time assumes this fraction of the datasheet peaks


SEGMENT_BLOCK, SEGMENT_UNIQUE, SEGMENT_SYSTEM, SEGMENT_USER, SEGMENT_ANSWER, SEGMENT_DATA = range(1, 7)


@dataclass(frozen=True)
class Segment:
    """A piece of a prompt: the first ``n_tokens`` of ``full_tokens`` token ids seeded by the
    plan's ``prompt_key`` and ``key`` (a kind code, then ints: a trace's hash id, a session's turn),
    so that equal keys are equal tokens in every request of a plan; ``SEGMENT_DATA`` keys name a
    dataset row whose token ids the plan holds. ``role``: whose turn it is in a chat history."""

    key: Tuple[int, ...]
    n_tokens: int
    full_tokens: int = 0  # 0: n_tokens
    role: str = "user"


@dataclass(frozen=True)
class RequestSpec:
    """One request to send. ``arrival_s`` is NaN for closed loop (sent when a client frees) and
    for a session's later turns (sent ``think_s`` after the previous turn's answer)."""

    index: int
    phase: str  # "warmup" | "measured"
    arrival_s: float
    input_tokens: int
    output_tokens: int  # max_tokens asked for (exact with ignore_eos)
    batch_index: int = -1  # offline: which static batch
    segments: Tuple[Segment, ...] = ()  # the prompt's pieces (empty: ids seeded by the request index)
    session: int = -1  # multi-turn: which session (-1: none)
    turn: int = 0  # multi-turn: which turn of its session
    think_s: float = 0.0  # multi-turn: seconds between the previous turn's answer and this send


@dataclass(frozen=True)
class WorkloadPlan:
    """Everything an engine needs to drive one cell. ``measured_start_s``: scheduled time of the
    first measured request (open loop) — the measured window opens there and lasts
    ``duration_s``."""

    arrival: Arrival
    batch_size: int
    requests: List[RequestSpec]
    rate_rps: Optional[float]
    concurrency: int
    duration_s: Optional[float]
    measured_start_s: float
    ignore_eos: bool
    seed: int
    prompt_key: int = 0  # seeds the prompts with the request index (the cell's identity)
    drain_timeout_s: float = DRAIN_FLOOR_S  # open/closed loop: seconds after the window, then cancel
    min_window_s: float = 0.0  # offline: measure more batches until the window is this long
    max_batches: int = 0  # offline: at most this many measured batches (0: exactly the planned ones)
    workload: Optional[WorkloadConfig] = field(default=None, compare=False, repr=False)
    content: Optional["PromptContent"] = field(default=None, compare=False, repr=False)
    token_ids: Dict[int, Tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)
    offered_rate_rps: Optional[float] = None  # arrivals offered per second (None: rate_rps)
    notes: Dict[str, object] = field(default_factory=dict, compare=False)  # what the source did (stored per cell)
    _segment_cache: Dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def offline(self) -> bool:
        return self.arrival is Arrival.offline

    @property
    def measured(self) -> List[RequestSpec]:
        return [r for r in self.requests if r.phase == "measured"]

    @property
    def sessions(self) -> bool:
        """Multi-turn: later turns are sent after their previous turn's answer."""
        return any(r.turn > 0 for r in self.requests)

    @property
    def offered_rps(self) -> Optional[float]:
        """Requests per second the plan offers in its window (open loop; None otherwise)."""
        return self.offered_rate_rps if self.offered_rate_rps is not None else self.rate_rps

    @property
    def loop_window_s(self) -> float:
        """The measured window's length (s) of an open/closed-loop plan (``duration_s``);
        ``ValueError`` for an offline plan, whose window is its measured batches."""
        if self.duration_s is None:
            raise ValueError("an offline plan has no duration_s: its window is its measured batches")
        return self.duration_s

    def prompt_ids(self, spec: RequestSpec, vocab_size: int) -> List[int]:
        """Request ``spec``'s prompt: exactly ``spec.input_tokens`` ordinary token ids, seeded by
        (``prompt_key``, request index): the same in every engine for the same cell, distinct
        between cells and requests."""
        if spec.segments:
            ids: List[int] = []
            for seg in spec.segments:
                ids.extend(self.segment_ids(seg, vocab_size))
            return ids[:spec.input_tokens]
        seed = int(np.random.SeedSequence([self.prompt_key, spec.index]).generate_state(1, np.uint64)[0])
        return prompt_token_ids(spec.input_tokens, seed, vocab_size)

    def segment_ids(self, seg: Segment, vocab_size: int) -> List[int]:
        """One segment's token ids (the same for the same key anywhere in the plan)."""
        if seg.key[0] == SEGMENT_DATA:
            return list(self.token_ids[seg.key[1]][:seg.n_tokens])
        full = max(seg.full_tokens, seg.n_tokens)
        ids = self._segment_cache.get((seg.key, full, vocab_size))
        if ids is None:
            seed = int(np.random.SeedSequence([self.prompt_key, *seg.key]).generate_state(1, np.uint64)[0])
            ids = self._segment_cache[(seg.key, full, vocab_size)] = prompt_token_ids(full, seed, vocab_size)
        return ids[:seg.n_tokens]

    def schedule(self) -> "BatchSchedule":
        """Offline: the static batches to run, in order (see ``BatchSchedule``)."""
        return BatchSchedule(self)

    def batch(self, b: int) -> List[RequestSpec]:
        """Offline: the specs of static batch ``b`` (warm-up batches first); past the planned
        batches they are drawn on demand, deterministically from (seed, b)."""
        planned = [s for s in self.requests if s.batch_index == b]
        if planned or self.workload is None:
            return planned
        return offline_batch(self.workload, self.batch_size, self.seed, b, "measured", self.content)


class PromptContent:
    """Requests' prompts and lengths from somewhere else than the distributions (a dataset,
    ``workloads.dataset``): ``take(indices, workload, rng)`` gives each request (input tokens,
    output tokens, segments); ``token_ids`` the rows the segments name."""

    token_ids: Dict[int, Tuple[int, ...]]

    def take(self, indices: Sequence[int], workload: WorkloadConfig,
             rng: np.random.Generator) -> List[Tuple[int, int, Tuple[Segment, ...]]]:
        raise NotImplementedError


def contents(workload: WorkloadConfig, content: Optional[PromptContent], indices: Sequence[int],
             rng: np.random.Generator) -> List[Tuple[int, int, Tuple[Segment, ...]]]:
    """(input tokens, output tokens, segments) of the requests ``indices``: from ``content``, else
    drawn from the workload's length distributions (no segments: ids seeded by the index)."""
    if content is not None:
        return content.take(indices, workload, rng)
    ins = draw_lengths(workload.input, len(indices), rng)
    outs = draw_lengths(workload.output, len(indices), rng)
    return [(int(i), int(o), ()) for i, o in zip(ins, outs)]


class BatchSchedule:
    """The static batches of an offline plan, decided as they run: every warm-up batch, at least
    ``num_batches`` measured ones, then more while the measured window (first measured batch's
    start to last one's end, seconds) is shorter than ``min_window_s``, up to ``max_batches``.
    Iterate it for each batch's specs; after running one, call ``ran(start_s, end_s)``."""

    def __init__(self, plan: WorkloadPlan):
        self.plan = plan
        phases: Dict[int, str] = {}
        for s in plan.requests:
            phases.setdefault(s.batch_index, s.phase)
        self.n_warmup = sum(1 for p in phases.values() if p == "warmup")
        self.n_planned = sum(1 for p in phases.values() if p == "measured")
        self.bounds: List[Tuple[str, float, float]] = []  # (phase, start s, end s) per batch run

    def __iter__(self) -> Iterator[List[RequestSpec]]:
        b = 0
        while b < self.n_warmup + self.n_planned or self._wants_more():
            specs = self.plan.batch(b)
            if not specs:
                return
            yield specs
            if len(self.bounds) <= b:
                raise RuntimeError("BatchSchedule: ran() was not called after a batch")
            b += 1

    def _wants_more(self) -> bool:
        n_measured = len(self.bounds) - self.n_warmup
        return self.window_s() < self.plan.min_window_s and n_measured < self.plan.max_batches

    def ran(self, start_s: float, end_s: float) -> None:
        phase = "warmup" if len(self.bounds) < self.n_warmup else "measured"
        self.bounds.append((phase, float(start_s), float(end_s)))

    def measured_bounds(self) -> List[Tuple[float, float]]:
        """(start s, end s) of each measured batch run so far."""
        return [(a, b) for p, a, b in self.bounds if p == "measured"]

    def window_s(self) -> float:
        measured = self.measured_bounds()
        return measured[-1][1] - measured[0][0] if measured else 0.0

    def window(self) -> Tuple[float, float]:
        """(start s, end s) of the measured batches (of every batch when none was measured)."""
        measured = self.measured_bounds() or [(a, b) for _, a, b in self.bounds]
        return (measured[0][0], measured[-1][1]) if measured else (0.0, 0.0)

    def step(self) -> Tuple[str, int, Optional[int]]:
        """What the next batch is: ("warmup" | "measured", done in that phase, expected total);
        the measured total is estimated from the batches so far (at least ``num_batches``)."""
        done = len(self.bounds)
        if done < self.n_warmup:
            return "warmup", done, self.n_warmup
        n = done - self.n_warmup
        total = self.n_planned
        if n and self.plan.min_window_s > 0:
            per_batch = self.window_s() / n
            want = int(np.ceil(self.plan.min_window_s / per_batch)) if per_batch > 0 else self.plan.max_batches
            total = min(max(total, want), max(self.plan.max_batches, total))
        return "measured", n, total


def draw_lengths(dist: LengthConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` token lengths from a length distribution, rounded and clipped to [min, max]."""
    mean, lo, hi = dist.mean_tokens, dist.min_tokens, dist.max_tokens
    kind = LengthDist(dist.dist)
    if kind is LengthDist.fixed:
        x = np.full(n, float(mean))
    elif kind is LengthDist.uniform:
        half = dist.std_tokens * np.sqrt(3.0)
        x = rng.uniform(mean - half, mean + half, n)
    elif kind is LengthDist.normal:
        x = rng.normal(mean, dist.std_tokens, n)
    elif kind is LengthDist.lognormal:
        sigma2 = np.log1p((dist.std_tokens / mean) ** 2)
        x = rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2), n)
    else:
        raise ValueError(f"unknown length distribution {kind}")
    return np.clip(np.rint(x), lo, hi).astype(np.int64)


def inter_arrivals(arrival: Arrival, rate_rps: float, gamma_shape: float, n: int, rng) -> np.ndarray:
    if arrival is Arrival.poisson:
        return rng.exponential(1.0 / rate_rps, n)
    if arrival is Arrival.constant:
        return np.full(n, 1.0 / rate_rps)
    if arrival is Arrival.gamma:
        return rng.gamma(gamma_shape, 1.0 / (rate_rps * gamma_shape), n)
    raise ValueError(f"{arrival} is not an open-loop arrival process")


def drain_limit_s(cfg: "CellConfig") -> float:
    """Seconds unfinished requests get after an open/closed-loop window: ``workload.drain_timeout_s``
    when set, else ``DRAIN_REQUEST_MULTIPLE`` x the roofline time of one request at the cell's
    batch size at ``DRAIN_EFFICIENCY`` of the datasheet peaks, at least ``DRAIN_FLOOR_S``."""
    wl = cfg.workload
    if wl.drain_timeout_s is not None:
        return float(wl.drain_timeout_s)
    batch = cfg.batch_size if wl.arrival is not Arrival.closed else max(1, min(cfg.batch_size, wl.concurrency))
    n_in, n_out = wl.mean_lengths()
    one = request_seconds(cfg.model, cfg.quantization, cfg.gpu, round(n_in), round(n_out), batch,
                          DRAIN_EFFICIENCY)
    return max(DRAIN_FLOOR_S, DRAIN_REQUEST_MULTIPLE * one)


def build_plan(workload: WorkloadConfig, batch_size: int, repeat: int = 0, prompt_key: Optional[int] = None,
               drain_timeout_s: Optional[float] = None, content: Optional[PromptContent] = None) -> WorkloadPlan:
    """The plan of one cell (pure; same inputs, same plan). ``prompt_key`` seeds the prompts
    (default: the seed); ``drain_timeout_s`` defaults to the workload's, else ``DRAIN_FLOOR_S``;
    ``content``: prompts and lengths from a dataset instead of the distributions."""
    seed = workload.seed_for(repeat)
    rng = np.random.default_rng(seed)
    arrival = Arrival(workload.arrival)
    if arrival is Arrival.offline:
        n_warm = int(workload.warmup_batches)
        requests = [spec for b in range(n_warm + int(workload.num_batches))
                    for spec in offline_batch(workload, batch_size, seed, b, "warmup" if b < n_warm else "measured",
                                              content)]
        start = 0.0
    else:
        if arrival.kind is WorkloadKind.open_loop:
            times, phases, start = _open_loop_times(workload, rng)
        else:  # closed loop
            n = max(int(workload.concurrency * workload.duration_s * 50), 64)
            n_warm = int(workload.warmup_requests)
            times, start = np.full(n_warm + n, np.nan), 0.0
            phases = ["warmup"] * n_warm + ["measured"] * n
        drawn = contents(workload, content, range(len(times)), rng)
        requests = [RequestSpec(i, phases[i], float(times[i]), n_in, n_out, segments=segs)
                    for i, (n_in, n_out, segs) in enumerate(drawn)]
    return WorkloadPlan(
        arrival=arrival,
        batch_size=int(batch_size),
        requests=requests,
        rate_rps=float(workload.rate_rps) if arrival.kind is WorkloadKind.open_loop else None,
        concurrency=int(workload.concurrency) if arrival is Arrival.closed else int(batch_size),
        duration_s=None if arrival is Arrival.offline else float(workload.duration_s),
        measured_start_s=start,
        ignore_eos=bool(workload.ignore_eos),
        seed=seed,
        prompt_key=seed if prompt_key is None else int(prompt_key),
        drain_timeout_s=float(drain_timeout_s if drain_timeout_s is not None else
                              workload.drain_timeout_s if workload.drain_timeout_s is not None else DRAIN_FLOOR_S),
        min_window_s=float(workload.min_window_s) if arrival is Arrival.offline else 0.0,
        max_batches=int(workload.max_batches) if arrival is Arrival.offline else 0,
        workload=workload,
        content=content,
        token_ids=content.token_ids if content is not None else {},
    )


def offline_batch(workload: WorkloadConfig, batch_size: int, seed: int, b: int, phase: str,
                  content: Optional[PromptContent] = None) -> List[RequestSpec]:
    """Static batch ``b``: ``batch_size`` requests (indices ``b x batch_size`` on), lengths drawn
    from (seed, b) (or taken from ``content``), all arriving at 0."""
    rng = np.random.default_rng([seed, b])
    first = b * batch_size
    drawn = contents(workload, content, range(first, first + batch_size), rng)
    return [RequestSpec(first + i, phase, 0.0, n_in, n_out, b, segments=segs)
            for i, (n_in, n_out, segs) in enumerate(drawn)]


def _open_loop_times(workload: WorkloadConfig, rng):
    rate, duration = float(workload.rate_rps), float(workload.duration_s)
    n_warm = int(workload.warmup_requests)
    n_guess = int(rate * duration * 1.5 + 10 * np.sqrt(rate * duration) + 20) + n_warm
    gaps = inter_arrivals(workload.arrival, rate, workload.gamma_shape, n_guess, rng)
    times = np.cumsum(gaps) - gaps[0]
    while times[-1] < (times[n_warm] if n_warm < len(times) else 0) + duration:
        more = inter_arrivals(workload.arrival, rate, workload.gamma_shape, n_guess, rng)
        times = np.concatenate([times, times[-1] + np.cumsum(more)])
    start = float(times[n_warm])
    keep = n_warm + int(np.searchsorted(times[n_warm:], start + duration, side="left"))
    times = times[:keep]
    if workload.exact_count and workload.arrival is Arrival.poisson:
        n = int(round(rate * duration))
        measured = start + np.sort(rng.uniform(0.0, duration, n))
        measured[0] = start  # the window opens with its first arrival
        times = np.concatenate([times[:n_warm], measured])
        keep = n_warm + n
    phases = ["warmup"] * n_warm + ["measured"] * (keep - n_warm)
    return times, phases, start
