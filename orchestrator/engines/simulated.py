"""A discrete-event roofline simulator of an LLM server/batch engine (no GPU, deterministic).

Each engine step computes the prefill tokens of newly admitted requests plus one token for each
running request; its time is ``max(bytes / (bandwidth x memory_efficiency), FLOPs / (peak x
compute_efficiency)) + step_overhead_s`` (see ``perf.roofline``), where the quantized linear
weights of a method listed in ``quantized_weight_efficiency`` are read at that fraction of the
memory efficiency (a dequantizing kernel, e.g. W4A16 AWQ, streams its weights slower than an fp16
GEMM does; the KV cache and the fp16 embeddings stay at ``memory_efficiency``), and the memory
side of the power model below scales with the bandwidth so achieved. ``host_step_s`` adds
host-bound seconds to every step in which the GPU waits at its idle draw: what an engine without
CUDA graphs (vLLM ``enforce_eager``) or a Python decode loop (transformers + bitsandbytes) spends
launching kernels (0 by default: vLLM with CUDA graphs, the reference). At most ``batch_size``
requests run at once (vLLM's ``max_num_seqs``); the rest wait FCFS. Offline workloads run static
batches back to back. Power is modeled per step: idle W between steps, and while busy
``idle + (TDP - idle) x (floor x bandwidth share + (1 - floor) x compute-bound fraction)``
(``busy_power_floor``, default 0.4; the bandwidth share is 1 except for slowly read quantized
weights, above). Every decode step reads the
KV cache of its running sequences (offline and online alike). With ``enable_prefix_caching`` the
prompt blocks a request finds in the modeled prefix cache (``engines.prefix_cache``) skip prefill
(they cost only their KV reads); the cache is emptied at the start of every cell, as the real
engines' is. Multi-turn sessions send each later turn ``think_s`` after the previous answer,
while it falls in the window. Offline windows follow the plan's
``BatchSchedule`` on virtual time; open/closed loop stops ``drain_timeout_s`` (virtual) after the
window and keeps what is unfinished as ``cancelled`` requests, as the real client does. That power model is the
cell's sampler (``ModeledPowerSampler``): its trace says ``source=simulated`` so nothing passes
for a measurement, and its idle draw is ``engine.simulated.idle_power_w`` (default: the GPU's
datasheet ``idle_w``).
"""
from __future__ import annotations

import heapq
import time
from typing import List, Optional

import numpy as np

from orchestrator.client.metrics import RequestRecord, WindowRun
from orchestrator.client.workload import WorkloadPlan
from orchestrator.config.engine_options import SimulatedOptions
from orchestrator.config.groups import Arrival
from orchestrator.core.phases import Phase
from orchestrator.core.steps import StepRecorder
from orchestrator.energy.base import PowerTrace, Sampler
from orchestrator.engines.base import ALL_KINDS, Engine, GpuUse, register_engine
from orchestrator.engines.prefix_cache import PrefixCacheModel, block_keys
from orchestrator.perf import roofline
from orchestrator.perf.vram import kv_capacity_tokens

CANCELLED = "cancelled: unfinished at the drain limit (workload.drain_timeout_s after the window)"


class _Costs:
    """Per-step cost of model x quantization x GPU: the roofline time of ``perf.roofline``'s
    step cost at the options' fractions of the peaks (as ``roofline.step_seconds``) plus the step
    overhead (at the busy draw), the host-bound seconds (``host_step_s``, at idle draw), and the
    power model."""

    def __init__(self, cfg, opts: SimulatedOptions):
        self.steps = roofline.step_model(cfg.model, cfg.quantization)
        self.gpus = int(cfg.tensor_parallel_size)
        self.bw = roofline.bandwidth_bytes_s(cfg.gpu) * opts.memory_efficiency * self.gpus  # the cell's GPUs together
        # the extra seconds per step of reading the quantized weights at the method's lower efficiency
        slow = opts.quantized_weight_efficiency.get(cfg.quantization.name, 1.0)
        self.weight_extra_s = roofline.quantized_weight_bytes(cfg.model, cfg.quantization) / self.bw * (1 / slow - 1)
        self.peak = roofline.peak_flops(cfg.gpu, cfg.quantization) * opts.compute_efficiency * self.gpus
        self.allreduce = roofline.allreduce_model(cfg.model, cfg.gpu, self.gpus, opts.allreduce_latency_s)
        self.overhead = opts.step_overhead_s
        self.host_s = opts.host_step_s
        self.floor = opts.busy_power_floor
        self.idle_w = (cfg.gpu.idle_w if opts.idle_power_w is None else opts.idle_power_w) * self.gpus
        self.tdp_w = cfg.gpu.tdp_w * self.gpus

    def step(self, new_tokens: int, cached_tokens: int):
        """-> (seconds, watts) of one step computing ``new_tokens`` over ``cached_tokens`` of KV
        (watts: the cell's GPUs together)."""
        cost = self.steps.cost(new_tokens, cached_tokens)
        t_cmp = cost.flops / self.peak
        t_mem = cost.bytes / self.bw
        t_read = t_mem + self.weight_extra_s
        core = max(t_read, t_cmp)
        # memory-side draw in proportion to the bandwidth achieved (1 unless weights are read slowly)
        frac = self.floor * (t_mem / t_read) + (1 - self.floor) * (t_cmp / core)
        busy_s, busy_w = core + self.overhead, self.idle_w + (self.tdp_w - self.idle_w) * frac
        # all-reduces (tensor parallelism): the GPUs wait on the links at the busy floor's draw
        comm_s = self.allreduce.seconds(new_tokens)
        comm_w = self.idle_w + (self.tdp_w - self.idle_w) * self.floor
        # the host-bound part of the step draws idle power: the mean over the whole step
        total = busy_s + comm_s + self.host_s
        return total, (busy_w * busy_s + comm_w * comm_s + self.idle_w * self.host_s) / total


class _Seq:
    __slots__ = ("spec", "arrival", "emitted", "context", "times", "hit", "keys")

    def __init__(self, spec, arrival):
        self.spec, self.arrival = spec, arrival
        self.emitted, self.context, self.times = 0, spec.input_tokens, []
        self.hit: Optional[int] = None  # prompt tokens from the prefix cache (None: no cache modeled)
        self.keys: List[int] = []


@register_engine("simulated")
class SimulatedEngine(Engine):
    """Runs every quantization and workload kind on no hardware; ``engine=auto``'s fallback."""

    quantizations = frozenset({"none", "awq", "gptq", "int8", "fp8"})
    workload_kinds = ALL_KINDS
    gpu = GpuUse.none
    tensor_parallel = True  # models a cell over tensor_parallel_size GPUs (split work, all-reduces, N x power)
    starts_processes = False
    auto_rank = 2
    typical_cell_s = 0.5  # wall seconds of a modeled cell (its windows are virtual time)
    options: SimulatedOptions

    def __init__(self, config, max_batch_size):
        super().__init__(config, max_batch_size)
        self._segments: List = []  # (t_start, t_end, watts)

    def start(self) -> None:
        self._costs = _Costs(self.config, self.options)
        self._cache: Optional[PrefixCacheModel] = None
        if self.options.enable_prefix_caching:
            self._cache = PrefixCacheModel(self.options.prefix_block_tokens,
                                           kv_capacity_tokens(self.config) // self.options.prefix_block_tokens)

    def _admit(self, seqs: List[_Seq], plan: WorkloadPlan) -> int:
        """Look the new requests' prompts up in the prefix cache, then cache them -> the prompt
        tokens to prefill (all of them without a cache)."""
        if self._cache is None:
            for s in seqs:
                s.hit = 0
            return sum(s.spec.input_tokens for s in seqs)
        vocab = int(self.config.model.vocab_size)
        new = 0
        for s in seqs:  # one at a time, as vLLM's scheduler: a request finds the blocks of those admitted before it
            s.keys = block_keys(plan.prompt_ids(s.spec, vocab), self._cache.block_tokens)
            s.hit = self._cache.hit_tokens(s.keys, s.spec.input_tokens)
            new += s.spec.input_tokens - s.hit
            self._cache.insert(s.keys)
        return new

    def run(self, plan: WorkloadPlan) -> WindowRun:
        """Simulate the plan. With ``pace_s`` the cell also takes that long in wall time, a
        third each in warm-up, measuring and draining (reported as phases)."""
        self._segments = []
        self._steps = StepRecorder("simulated")
        if self._cache is not None:
            self._cache.reset()
        unit = "batches" if plan.offline else "requests"
        n_measured = len({s.batch_index for s in plan.measured}) if plan.offline else len(plan.measured)
        self._pace(Phase.warmup, None, None, unit)
        self._pace(Phase.measuring, 0, n_measured, unit)
        wr = self._run_offline(plan) if plan.offline else self._run_online(plan)
        self._pace(Phase.draining, n_measured, n_measured, unit)
        self._horizon_s = wr.window_end_s  # the power trace must cover the whole window
        return wr

    def _pace(self, phase: Phase, done, total, unit: str) -> None:
        if self.options.pace_s > 0:  # (without pacing a cell takes milliseconds: nothing to show)
            self.progress(phase, done, total, unit)
            time.sleep(self.options.pace_s / 3)

    # ---------------------------------------------------------------- offline static batches
    def _run_offline(self, plan: WorkloadPlan) -> WindowRun:
        """Static batches back to back on virtual time (``BatchSchedule``: the same window rule
        as the real engines); every decode step reads the KV cache of the whole batch."""
        t = 0.0
        records: List[RequestRecord] = []
        schedule = plan.schedule()
        for specs in schedule:
            start = t
            seqs = [_Seq(s, t) for s in specs]
            new = self._admit(seqs, plan)
            t = self._step(t, seqs, new=new, cached=sum(s.spec.input_tokens for s in seqs) - new)
            live = [s for s in seqs if s.emitted < s.spec.output_tokens]
            while live:
                t = self._step(t, live, new=len(live), cached=sum(s.context for s in live) - len(live))
                live = [s for s in live if s.emitted < s.spec.output_tokens]
            schedule.ran(start, t)
            records += [self._record(s, send=s.arrival) for s in seqs]
        t0, t1 = schedule.window()
        return WindowRun(records, t0, t1, batch_bounds_s=schedule.measured_bounds(), steps=self._steps.timeline())

    # ---------------------------------------------------------------- open / closed loop
    def _run_online(self, plan: WorkloadPlan) -> WindowRun:
        closed = plan.arrival is Arrival.closed
        cap = plan.batch_size
        specs = list(plan.requests)
        later_turns = {(s.session, s.turn): s for s in specs if s.turn > 0}
        pending: List = []  # heap of (arrival, index, spec)
        if closed:
            issued = min(plan.concurrency, len(specs))
            for s in specs[:issued]:
                heapq.heappush(pending, (0.0, s.index, s))
        else:
            issued = len(specs)
            for s in specs:
                if s.turn == 0:
                    heapq.heappush(pending, (s.arrival_s, s.index, s))
        window_start = plan.measured_start_s
        window_end: Optional[float] = None if closed else window_start + plan.loop_window_s
        t = 0.0
        running: List[_Seq] = []
        records: List[RequestRecord] = []
        while pending or running:
            if window_end is not None and t >= window_end + plan.drain_timeout_s:
                break  # the drain limit: what is left is cancelled below
            if not running and pending and pending[0][0] > t:
                t = pending[0][0]
            admitted: List[_Seq] = []
            while pending and pending[0][0] <= t and len(running) + len(admitted) < cap:
                arr, _, spec = heapq.heappop(pending)
                admitted.append(_Seq(spec, arr))
            decoding = running
            prefill = self._admit(admitted, plan)
            # each decoding request feeds its newest token over its KV; admitted ones read their cached prefix
            cached = sum(s.context for s in decoding) - len(decoding) + sum(s.spec.input_tokens for s in admitted) - prefill
            t = self._step(t, decoding + admitted, new=len(decoding) + prefill, cached=cached)
            running = []
            for seq in decoding + admitted:
                if seq.emitted >= seq.spec.output_tokens:
                    records.append(self._record(seq, send=seq.arrival))
                    nxt = later_turns.get((seq.spec.session, seq.spec.turn + 1))
                    if nxt is not None and window_end is not None and t + nxt.think_s <= window_end:
                        heapq.heappush(pending, (t + nxt.think_s, nxt.index, nxt))
                    if closed and issued < len(specs):
                        nxt = specs[issued]
                        if nxt.phase == "measured" and window_end is None:
                            window_start, window_end = t, t + plan.loop_window_s
                        if window_end is None or t < window_end:
                            heapq.heappush(pending, (t, nxt.index, nxt))
                            issued += 1
                else:
                    running.append(seq)
        if window_end is None:
            window_start, window_end = window_start, t
        records += [self._cancelled(s, t) for s in running]
        records += [self._cancelled(_Seq(spec, arr), t) for arr, _, spec in pending]
        records.sort(key=lambda r: r.index)
        return WindowRun(records, window_start, window_end, drain_timeout_s=plan.drain_timeout_s,
                         drain_s=max(0.0, t - window_end), steps=self._steps.timeline())

    @classmethod
    def _cancelled(cls, s: _Seq, t_stop: float) -> RequestRecord:
        """A request unfinished at the drain limit: the tokens it emitted, ended at ``t_stop``."""
        if not s.times:
            return RequestRecord(
                index=s.spec.index, phase=s.spec.phase, arrival_s=s.arrival, send_s=s.arrival,
                first_token_s=float("nan"), end_s=t_stop, input_tokens=s.spec.input_tokens, output_tokens=0,
                requested_output_tokens=s.spec.output_tokens, status="cancelled", error=CANCELLED,
                batch_index=s.spec.batch_index, cached_tokens=s.hit, session=s.spec.session, turn=s.spec.turn)
        rec = cls._record(s, send=s.arrival)
        rec.status, rec.error, rec.end_s = "cancelled", CANCELLED, t_stop
        return rec

    def _step(self, t: float, seqs: List[_Seq], new: int, cached: int = 0) -> float:
        dt, watts = self._costs.step(new, cached)
        t_end = t + dt
        self._segments.append((t, t_end, watts))
        # a request's first step computes its prompt (less what the cache held); later ones one token
        self._steps.add(t, t_end, [(s.spec.index, s.spec.input_tokens - (s.hit or 0), 0) if s.emitted == 0
                                   else (s.spec.index, 0, 1) for s in seqs], energy_j=watts * dt)
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
            cached_tokens=s.hit,
            session=s.spec.session,
            turn=s.spec.turn,
        )

    def modeled_sampler(self) -> "ModeledPowerSampler":
        return ModeledPowerSampler(self)

    def modeled_power(self) -> PowerTrace:
        """Samples every ``power_sample_interval_s`` of virtual time, with an exact cumulative
        energy counter (mJ) of the piecewise-constant power model."""
        interval = self.options.power_sample_interval_s
        seg = np.asarray(self._segments) if self._segments else np.zeros((0, 3))
        idle, gpu = self._costs.idle_w, self.config.gpu
        t_end = max(float(seg[-1, 1]) if len(seg) else 0.0, getattr(self, "_horizon_s", 0.0))
        # Build a gap-filled piecewise-constant power function on [0, t_end + interval].
        bound_list: List[float] = [0.0]
        watt_list: List[float] = []
        for a, b, w in seg:
            if a > bound_list[-1] + 1e-12:
                watt_list.append(idle)
                bound_list.append(a)
            watt_list.append(w)
            bound_list.append(b)
        watt_list.append(idle)
        bound_list.append(t_end + interval)
        bounds, watts = np.asarray(bound_list), np.asarray(watt_list)
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
            gpu_name=f"simulated {gpu.name}",
            note="modeled by the simulated engine (roofline power model), not measured",
        )


class ModeledPowerSampler(Sampler):
    """The simulator's power model as a sampler: ``stop()`` returns the modeled trace of the
    engine's last run; the idle draw is ``idle_power_w`` or the GPU's datasheet ``idle_w`` (no
    baseline to sit)."""

    def __init__(self, engine: SimulatedEngine):
        self.engine = engine

    @classmethod
    def for_engine(cls, settings, engine) -> "ModeledPowerSampler":
        """The simulator's own power model (the ``sampler`` group does not apply to it)."""
        if not isinstance(engine, SimulatedEngine):
            raise TypeError(f"the modeled-power sampler measures the simulator only, not {type(engine).__name__}")
        return cls(engine)

    def start(self) -> None:
        pass

    def stop(self) -> PowerTrace:
        return self.engine.modeled_power()

    def known_idle_power_w(self) -> Optional[float]:
        """The cell's GPUs' idle draw together (W)."""
        idle = self.engine.options.idle_power_w
        gpus = int(self.engine.config.tensor_parallel_size)
        return float(self.engine.config.gpu.idle_w if idle is None else idle) * gpus
