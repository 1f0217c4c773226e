"""Part ``bare``: one ``vllm.LLM`` with the orchestrator's engine arguments and a plain
``LLM.generate`` loop over the same prompts and sampling parameters: (a) the reference tok/s,
(d) tok/s with the NVML sampler thread on vs off, (c) one busy window's counter vs integrated
energy at a high sampling rate (the raw trace is kept). Runs in the worker process (``bench_vllm.py --worker bare``); writes ``bare.json``."""
from __future__ import annotations

import os
import statistics
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List

from benchvllm.common import batch_sizes, compose_cell, log, overrides, write_json
from benchvllm.procs import run_part

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

ENERGY_KEYS = ("energy_j", "energy_integrated_j", "energy_mismatch", "mean_power_w", "max_power_w",
               "counter_update_period_s", "short_window")


def part_bare(args, work: Path, budget_s: float) -> Dict:
    return run_part("bare", args, work, budget_s)


def prepared_batches(plan, cfg: "CellConfig", specs_list) -> List:
    """[(phase, prompts, SamplingParams list)] for these batches of ``plan``, built the way
    ``VllmOfflineEngine`` builds them (token-id prompts, the same sampling parameters)."""
    from vllm import SamplingParams

    from orchestrator.engines.vllm.common import sampling_kwargs

    vocab = int(cfg.model.vocab_size)
    return [(specs[0].phase, [{"prompt_token_ids": plan.prompt_ids(s, vocab)} for s in specs],
             [SamplingParams(**sampling_kwargs(s, plan.ignore_eos)) for s in specs]) for specs in specs_list]


def bare_plan(cfg: "CellConfig", batch_size: int, prompt_key: int):
    """The orchestrator's offline plan of this cell with prompts of its own (``prompt_key``)."""
    from orchestrator.client.workload import build_plan

    return build_plan(cfg.workload, batch_size, 0, prompt_key=prompt_key)


def measured_batches(cfg: "CellConfig", batch_size: int, prompt_key: int, n: int) -> List:
    """``n`` prepared measured batches of the plan (drawn past the planned ones if needed)."""
    plan = bare_plan(cfg, batch_size, prompt_key)
    first = int(cfg.workload.warmup_batches)
    return prepared_batches(plan, cfg, [plan.batch(first + i) for i in range(n)])


def generate_loop(llm, batches) -> Dict:
    """A plain ``LLM.generate`` loop; tok/s over the measured batches (first start to last end)."""
    t_first = t_last = None
    tokens = 0
    for phase, prompts, params in batches:
        t = time.monotonic()
        outs = llm.generate(prompts, params, use_tqdm=False)
        if phase == "measured":
            t_first = t if t_first is None else t_first
            tokens += sum(len(o.outputs[0].token_ids) for o in outs)
            t_last = time.monotonic()
    if t_first is None:  # warm-up only
        return {"output_tokens": 0, "window_s": 0.0, "output_tok_s": float("nan"), "t0_ns": 0, "t1_ns": 0}
    return {"output_tokens": tokens, "window_s": t_last - t_first, "output_tok_s": tokens / (t_last - t_first),
            "t0_ns": int(t_first * 1e9), "t1_ns": int(t_last * 1e9)}


def schedule_loop(llm, cfg: "CellConfig", batch_size: int, prompt_key: int) -> Dict:
    """A plain ``LLM.generate`` loop under the orchestrator's window rule (``BatchSchedule``:
    warm-up, at least ``num_batches``, more until ``min_window_s``), each batch prepared just
    before it runs, as the engine does; tok/s over the measured batches."""
    plan = bare_plan(cfg, batch_size, prompt_key)
    schedule = plan.schedule()
    tokens = 0
    for specs in schedule:
        (phase, prompts, params), = prepared_batches(plan, cfg, [specs])
        t = time.monotonic()
        outs = llm.generate(prompts, params, use_tqdm=False)
        schedule.ran(t, time.monotonic())
        if phase == "measured":
            tokens += sum(len(o.outputs[0].token_ids) for o in outs)
    window_s = schedule.window_s()
    return {"output_tokens": tokens, "window_s": window_s, "output_tok_s": tokens / window_s,
            "batches": len(schedule.measured_bounds())}


def bare_worker(args) -> int:
    """Start ``vllm.LLM`` with the orchestrator's arguments, then each measurement in turn
    (a failed one keeps the others); ``bare.json`` after each."""
    sizes = batch_sizes(args)
    cfg = compose_cell(overrides(args, "offline"), max(sizes))
    llm, uuid, res = start_llm(cfg, max(sizes))
    out_path = Path(args.work) / "bare.json"
    steps = [("offline", lambda: bare_offline(llm, cfg, sizes, res)),
             ("sampler_on_off", lambda: bare_sampler(llm, cfg, uuid, args)),
             ("energy_window", lambda: bare_energy(llm, cfg, uuid, args.energy_batch_size, args.energy_window_s,
                                                   Path(args.out), args.energy_trace_interval_s))]
    for key, step in steps:
        try:
            value = step()
            if value is not None:
                res[key] = value
        except Exception:
            res[f"{key}_error"] = traceback.format_exc()[-3000:]
            log(f"bare: {key} failed:\n{res[f'{key}_error']}")
        write_json(out_path, res)
    return 0


def start_llm(cfg: "CellConfig", max_num_seqs: int):
    """``vllm.LLM`` with ``VllmOfflineEngine``'s arguments and environment -> (llm, GPU uuid,
    the result dict so far: engine arguments and start-up time)."""
    from orchestrator.energy.gpuinfo import assigned_gpu
    from orchestrator.engines.vllm.common import cache_env, engine_args, model_path, wait_for_gpu_memory

    gpu = assigned_gpu()
    seen = wait_for_gpu_memory(gpu, cfg.engine.vllm.gpu_memory_utilization)  # the last part's exit
    log(f"bare: GPU memory {seen}")
    os.environ.update(cache_env(cfg))
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # as VllmOfflineEngine does
    kwargs = engine_args(cfg, max_num_seqs, str(model_path(cfg)))
    kwargs.pop("scheduler_cls", None)  # bare vLLM: its stock scheduler (the orchestrator logs its steps)
    res: Dict = {"engine_args": {k: v for k, v in kwargs.items() if k != "model"}, "offline": {}}
    log(f"bare: vllm.LLM(max_num_seqs={max_num_seqs}) ...")
    t0 = time.monotonic()
    from vllm import LLM

    llm = LLM(**kwargs)
    res["vllm_start_s"] = time.monotonic() - t0
    log(f"bare: engine up in {res['vllm_start_s']:.0f} s")
    return llm, gpu.uuid, res


def bare_offline(llm, cfg: "CellConfig", sizes: List[int], res: Dict) -> None:
    for bs in sizes:
        r = schedule_loop(llm, cfg, bs, prompt_key=1000 + bs)
        res["offline"][str(bs)] = {k: r[k] for k in ("output_tok_s", "output_tokens", "window_s", "batches")}
        log(f"bare: batch {bs}: {r['output_tok_s']:.0f} output tok/s over {r['window_s']:.1f} s ({r['batches']} batches)")


def bare_sampler(llm, cfg: "CellConfig", uuid: str, args) -> Dict:
    """(d): ABBA-ordered trials with the NVML sampler thread off and on."""
    from orchestrator.energy.nvml import NvmlSampler

    batches = measured_batches(cfg, args.sampler_batch_size, 17, args.sampler_batches)
    generate_loop(llm, [("warmup", *batches[0][1:])])
    order = ["off", "on", "on", "off"] * ((args.sampler_trials + 3) // 4)
    tok_s: Dict[str, List[float]] = {"on": [], "off": []}
    for mode in order[: args.sampler_trials]:
        sampler = NvmlSampler(uuid, float(cfg.sampler.interval_s)) if mode == "on" else None
        if sampler:
            sampler.start()
        r = generate_loop(llm, batches)
        if sampler:
            sampler.stop()
        tok_s[mode].append(r["output_tok_s"])
        log(f"bare: sampler {mode}: {r['output_tok_s']:.0f} tok/s")
    on, off = statistics.median(tok_s["on"]), statistics.median(tok_s["off"])
    return {"batch_size": args.sampler_batch_size, "batches_per_trial": args.sampler_batches, "trials": tok_s,
            "median_on_tok_s": on, "median_off_tok_s": off, "on_over_off": on / off,
            "off_spread_rel": (max(tok_s["off"]) - min(tok_s["off"])) / off}


def bare_energy(llm, cfg: "CellConfig", uuid: str, batch_size: int, window_s: float, trace_dir: Path,
                trace_interval_s: float) -> Dict:
    """(c): one busy window of at least ``window_s`` sampled at ``trace_interval_s``: counter
    delta vs integrated instant power; the raw trace and the batch bounds go to
    ``trace_dir/energy_trace.npz`` (``scripts/energy_crosscheck.py`` reads it)."""
    import numpy as np

    from orchestrator.energy.base import window_energy
    from orchestrator.energy.nvml import NvmlSampler

    measured = measured_batches(cfg, batch_size, 31, 4)
    sampler = NvmlSampler(uuid, trace_interval_s)
    sampler.start()
    time.sleep(1.0)  # idle before the window: the trace shows the ramp at its start
    t0 = time.monotonic()
    bounds = []
    while time.monotonic() - t0 < window_s:
        _, prompts, params = measured[len(bounds) % len(measured)]
        a = time.monotonic()
        llm.generate(prompts, params, use_tqdm=False)
        bounds.append((a, time.monotonic()))
    t1 = time.monotonic()
    time.sleep(1.0)
    trace = sampler.stop()
    np.savez(trace_dir / "energy_trace.npz", t_ns=trace.t_ns, power_w=trace.power_w, energy_mj=trace.energy_mj,
             batch_bounds_s=np.asarray(bounds), window_s=np.asarray([t0, t1]), batch_size=batch_size)
    row = window_energy(trace, int(t0 * 1e9), int(t1 * 1e9), None)
    log(f"bare: energy window {t1 - t0:.1f} s at {1 / trace_interval_s:.0f} Hz: counter {row['energy_j']:.0f} J, "
        f"integrated {row['energy_integrated_j']:.0f} J")
    return {"batch_size": batch_size, "window_s": t1 - t0, "batches": len(bounds), "note": trace.note,
            "trace_interval_s": trace_interval_s, **{k: row[k] for k in ENERGY_KEYS}}
