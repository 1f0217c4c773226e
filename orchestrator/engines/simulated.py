"""A discrete-event roofline simulator of an LLM server/batch engine (no GPU, deterministic).

Each engine step computes the prefill tokens of newly admitted requests plus one token for each
running request; its time is ``max(bytes / (bandwidth x memory_efficiency), FLOPs / (peak x
compute_efficiency)) + step_overhead_s`` (see ``analysis.roofline``). At most ``batch_size``
requests run at once (vLLM's ``max_num_seqs``); the rest wait FCFS. Offline workloads run static
batches back to back. Power is modeled per step: idle W between steps, and while busy
``idle + (TDP - idle) x (0.4 + 0.6 x compute-bound fraction)``; the trace it returns says
``source=simulated`` so nothing passes for a measurement.
"""
from __future__ import annotations

import heapq
import time
from typing import List, Optional

import numpy as np

from orchestrator.analysis import roofline
from orchestrator.energy.base import PowerTrace
from orchestrator.engines.base import Engine
from orchestrator.metrics import RequestRecord, WindowRun
from orchestrator.workload import WorkloadPlan

BUSY_POWER_FLOOR = 0.4


class _Costs:
    """Per-step cost constants of model x quantization x GPU."""

    def __init__(self, cfg, opts):
        m, q, g = cfg["model"], cfg["quantization"], cfg["gpu"]
        self.weight_bytes = roofline.weight_bytes(m, q)
        self.kv_per_token = roofline.kv_bytes_per_token(m)
        self.flops_per_token = 2.0 * (roofline.linear_params(m) + m["vocab_size"] * m["hidden_size"])
        self.flops_per_cached = 4.0 * m["n_layers"] * m["n_heads"] * roofline.head_dim(m)
        self.bw = roofline.bandwidth_bytes_s(g) * opts["memory_efficiency"]
        self.peak = roofline.peak_flops(g, q) * opts["compute_efficiency"]
        self.overhead = opts["step_overhead_s"]
        self.idle_w, self.tdp_w = g["idle_w"], g["tdp_w"]

    def step(self, new_tokens: int, cached_tokens: int):
        """-> (seconds, watts) of one step."""
        t_mem = (self.weight_bytes + self.kv_per_token * (cached_tokens + new_tokens)) / self.bw
        t_cmp = (self.flops_per_token * new_tokens + self.flops_per_cached * cached_tokens) / self.peak
        core = max(t_mem, t_cmp)
        frac = BUSY_POWER_FLOOR + (1 - BUSY_POWER_FLOOR) * (t_cmp / core)
        return core + self.overhead, self.idle_w + (self.tdp_w - self.idle_w) * frac


class _Seq:
    __slots__ = ("spec", "arrival", "emitted", "context", "times")

    def __init__(self, spec, arrival):
        self.spec, self.arrival = spec, arrival
        self.emitted, self.context, self.times = 0, spec.input_tokens, []


class SimulatedEngine(Engine):
    name = "simulated"
    uses_gpu = False

    def __init__(self, config, max_batch_size):
        super().__init__(config, max_batch_size)
        self._segments: List = []  # (t_start, t_end, watts)

    def start(self) -> None:
        self._costs = _Costs(self.config, self.config["engine"]["simulated"])

    def run(self, plan: WorkloadPlan) -> WindowRun:
        self._segments = []
        if self.config["engine"]["simulated"]["pace_s"] > 0:
            time.sleep(self.config["engine"]["simulated"]["pace_s"])
        wr = self._run_offline(plan) if plan.offline else self._run_online(plan)
        self._horizon_s = wr.window_end_s  # the power trace must cover the whole window
        return wr

    # ---------------------------------------------------------------- offline static batches
    def _run_offline(self, plan: WorkloadPlan) -> WindowRun:
        t = 0.0
        records: List[RequestRecord] = []
        window_start = None
        by_batch = {}
        for spec in plan.requests:
            by_batch.setdefault(spec.batch_index, []).append(spec)
        for b in sorted(by_batch):
            specs = by_batch[b]
            if window_start is None and specs[0].phase == "measured":
                window_start = t
            seqs = [_Seq(s, t) for s in specs]
            t = self._step(t, seqs, new=sum(s.spec.input_tokens for s in seqs))
            live = [s for s in seqs if s.emitted < s.spec.output_tokens]
            while live:
                t = self._step(t, live, new=len(live))
                live = [s for s in live if s.emitted < s.spec.output_tokens]
            records += [self._record(s, send=s.arrival) for s in seqs]
        return WindowRun(records, window_start or 0.0, t)

    # ---------------------------------------------------------------- open / closed loop
    def _run_online(self, plan: WorkloadPlan) -> WindowRun:
        closed = plan.arrival == "closed"
        cap = plan.batch_size
        specs = list(plan.requests)
        pending: List = []  # heap of (arrival, index, spec)
        if closed:
            issued = min(plan.concurrency, len(specs))
            for s in specs[:issued]:
                heapq.heappush(pending, (0.0, s.index, s))
        else:
            issued = len(specs)
            for s in specs:
                heapq.heappush(pending, (s.arrival_s, s.index, s))
        window_start = plan.measured_start_s
        window_end: Optional[float] = None if closed else window_start + plan.duration_s
        t, running, records = 0.0, [], []
        while pending or running:
            if not running and pending and pending[0][0] > t:
                t = pending[0][0]
            admitted = []
            while pending and pending[0][0] <= t and len(running) + len(admitted) < cap:
                arr, _, spec = heapq.heappop(pending)
                admitted.append(_Seq(spec, arr))
            decoding = running
            cached = sum(s.context for s in decoding)
            t = self._step(t, decoding + admitted, new=len(decoding) + sum(s.spec.input_tokens for s in admitted), cached=cached)
            running = []
            for s in decoding + admitted:
                if s.emitted >= s.spec.output_tokens:
                    records.append(self._record(s, send=s.arrival))
                    if closed and issued < len(specs):
                        nxt = specs[issued]
                        if nxt.phase == "measured" and window_end is None:
                            window_start, window_end = t, t + plan.duration_s
                        if window_end is None or t < window_end:
                            heapq.heappush(pending, (t, nxt.index, nxt))
                            issued += 1
                else:
                    running.append(s)
        if window_end is None:
            window_start, window_end = window_start, t
        records.sort(key=lambda r: r.index)
        return WindowRun(records, window_start, window_end)

    def _step(self, t: float, seqs: List[_Seq], new: int, cached: int = 0) -> float:
        dt, watts = self._costs.step(new, cached)
        t_end = t + dt
        self._segments.append((t, t_end, watts))
        for s in seqs:
            s.emitted += 1
            s.context += 1
            s.times.append(t_end)
        return t_end

    @staticmethod
    def _record(s: _Seq, send: float) -> RequestRecord:
        times = np.asarray(s.times)
        return RequestRecord(
            index=s.spec.index,
            phase=s.spec.phase,
            arrival_s=s.arrival,
            send_s=send,
            first_token_s=float(times[0]),
            end_s=float(times[-1]),
            input_tokens=s.spec.input_tokens,
            output_tokens=len(times),
            requested_output_tokens=s.spec.output_tokens,
            token_times_s=times,
            batch_index=s.spec.batch_index,
        )

    def modeled_power_source(self) -> bool:
        return True

    def modeled_power(self) -> PowerTrace:
        """Samples every ``power_sample_interval_s`` of virtual time, with an exact cumulative
        energy counter (mJ) of the piecewise-constant power model."""
        interval = self.config["engine"]["simulated"]["power_sample_interval_s"]
        seg = np.asarray(self._segments) if self._segments else np.zeros((0, 3))
        idle, gpu = self._costs.idle_w, self.config["gpu"]
        t_end = max(float(seg[-1, 1]) if len(seg) else 0.0, getattr(self, "_horizon_s", 0.0))
        # Build a gap-filled piecewise-constant power function on [0, t_end + interval].
        bounds, watts = [0.0], []
        for a, b, w in seg:
            if a > bounds[-1] + 1e-12:
                watts.append(idle)
                bounds.append(a)
            watts.append(w)
            bounds.append(b)
        watts.append(idle)
        bounds.append(t_end + interval)
        bounds, watts = np.asarray(bounds), np.asarray(watts)
        cum = np.concatenate([[0.0], np.cumsum(np.diff(bounds) * watts)])
        ts = np.arange(0.0, bounds[-1] + 1e-9, interval)
        idx = np.clip(np.searchsorted(bounds, ts, side="right") - 1, 0, len(watts) - 1)
        busy = watts[idx] > idle
        return PowerTrace(
            source="simulated",
            t_ns=np.rint(ts * 1e9).astype(np.int64),
            power_w=watts[idx],
            energy_mj=np.interp(ts, bounds, cum) * 1e3,
            util_pct=np.where(busy, 100.0, 0.0),
            memory_used_mib=np.full(ts.size, np.nan),
            sm_clock_mhz=np.full(ts.size, np.nan),
            temperature_c=np.full(ts.size, np.nan),
            gpu_name=f"simulated {gpu['name']}",
            note="modeled by the simulated engine (roofline power model), not measured",
        )
