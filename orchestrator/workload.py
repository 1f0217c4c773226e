"""Request generators: what to send, when (scheduled arrival, seconds from the plan's start).

Open loop (poisson | constant | gamma): ``warmup_requests`` at the rate, then every arrival in
the next ``duration_s`` is measured. Closed loop: ``concurrency`` clients, each sending its next
request when the last one ends, for ``duration_s`` (arrival = send time, filled by the engine).
Offline: ``warmup_batches`` then ``num_batches`` static batches of exactly ``batch_size`` prompts.
Lengths are drawn per request from the workload's distributions; everything is deterministic for
``seed`` (+ the cell's repeat index).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from orchestrator.config.groups import Arrival, LengthConfig, LengthDist, WorkloadConfig, WorkloadKind


@dataclass(frozen=True)
class RequestSpec:
    """One request to send. ``arrival_s`` is NaN for closed loop (sent when a client frees)."""

    index: int
    phase: str  # "warmup" | "measured"
    arrival_s: float
    input_tokens: int
    output_tokens: int  # max_tokens asked for (exact with ignore_eos)
    batch_index: int = -1  # offline: which static batch


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

    @property
    def offline(self) -> bool:
        return self.arrival is Arrival.offline

    @property
    def measured(self) -> List[RequestSpec]:
        return [r for r in self.requests if r.phase == "measured"]


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


def build_plan(workload: WorkloadConfig, batch_size: int, repeat: int = 0) -> WorkloadPlan:
    """The plan of one cell (pure; same inputs, same plan)."""
    seed = int(workload.seed) + 1_000_003 * int(repeat)
    rng = np.random.default_rng(seed)
    arrival = Arrival(workload.arrival)
    if arrival.kind is WorkloadKind.open_loop:
        times, phases, start = _open_loop_times(workload, rng)
        batch_idx = np.full(len(times), -1)
    elif arrival is Arrival.closed:
        n = max(int(workload.concurrency * workload.duration_s * 50), 64)
        n_warm = int(workload.warmup_requests)
        times = np.full(n_warm + n, np.nan)
        phases = ["warmup"] * n_warm + ["measured"] * n
        batch_idx, start = np.full(len(times), -1), 0.0
    else:  # offline
        n_warm, n_meas = int(workload.warmup_batches), int(workload.num_batches)
        batch_idx = np.repeat(np.arange(n_warm + n_meas), batch_size)
        times = np.zeros(len(batch_idx))
        phases = ["warmup" if b < n_warm else "measured" for b in batch_idx]
        start = 0.0
    n_total = len(times)
    ins = draw_lengths(workload.input, n_total, rng)
    outs = draw_lengths(workload.output, n_total, rng)
    requests = [
        RequestSpec(i, phases[i], float(times[i]), int(ins[i]), int(outs[i]), int(batch_idx[i]))
        for i in range(n_total)
    ]
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
    )


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
