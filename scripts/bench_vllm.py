"""Benchmark: vLLM through the orchestrator vs bare vLLM, and the NVML sampler, on one GPU.

    export PYTHONPATH=/root/site:$PWD
    python scripts/bench_vllm.py --out experiments/benchmarks/vllm_h100     # all parts, ~7-9 min on an H100
    python scripts/bench_vllm.py --out DIR --parts offline,bare            # a subset (e.g. two runs of < 10 min)
    python scripts/bench_vllm.py --out DIR --report-only [--merge A/results.json B/results.json]  # rebuild the table

Three parts, each in its own process (one vLLM engine at a time on the GPU; a failed part keeps
the others' numbers), with the same engine arguments on both sides of every comparison
(``vllm_offline.engine_args`` of the same composed config; ``--max-num-batched-tokens`` pins the
one default that differs between ``LLM`` and ``vllm serve``, which also lets both reuse one
compile cache):

``offline``  ``python -m orchestrator -m batch_size=1,8,64,256 workload=offline engine=vllm
             sampler=nvml`` (128 in / 128 out, 1 warm-up + 4 measured static batches, one shared
             engine start). Gives (a) output tok/s per batch size, (c) counter vs integrated
             energy for windows >= 10 s, and (e) the time the orchestrator adds per cell beyond
             vLLM's own start-up (``import vllm`` + ``LLM(...)``), the measured windows, the warm-up
             batches and the idle baseline: Ray start and scheduling, worker process, GPU checks,
             model directory, sampler, metrics, Parquet writes, driver exit.
``bare``     one ``vllm.LLM(**same args)`` and a plain ``LLM.generate`` loop over the same
             prompts and sampling parameters: (a) the reference tok/s; (d) tok/s with the
             NVML sampler thread on vs off (alternating ABBA trials at ``--sampler-batch-size``);
             (c) a ``--energy-window-s`` busy window, counter vs integrated instant power.
``server``   a ``VllmServerEngine`` (the orchestrator's ``vllm serve`` + streaming client) runs
             ``chat_medium`` (Poisson 20 req/s, ``--chat-duration-s``) with the sampler on, then
             ``vllm bench serve`` runs against the same server with the same request lengths
             (a custom dataset of the plan's measured requests, other prompt ids so no prefix
             cache is shared) at the same rate: (b) achieved arrival rate, TTFT and TPOT p50;
             (c) the chat window's energy.

Targets: (a) orchestrator >= 97% of bare at every batch size; (b) achieved rate within 2% of
20 req/s, TTFT and TPOT p50 within 10% of ``vllm bench serve``; (c) within 5% on windows >= 10 s;
(d) within 1%; (e) <= 10 s per cell. The arrival rate is judged against the Poisson schedule the
client was given (a 30 s draw of seed 0 holds 18.9 req/s: sampling, not the client); that draw's
deviation from 20 req/s is shown beside it.

Writes ``results.json`` (every number, after each part) and ``results.md`` (the table) under
``--out``; logs, the Parquet store and ``vllm bench serve``'s raw output go under ``--work``.
Progress lines start with ``[bench]``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PARTS = ("offline", "bare", "server")
# Rough seconds each part needs (engine start included), to skip what cannot fit the budget.
PART_MIN_S = {"offline": 150.0, "bare": 120.0, "server": 170.0}
TARGETS = {"offline_ratio": 0.97, "rate_rel": 0.02, "latency_rel": 0.10, "energy_rel": 0.05,
           "sampler_rel": 0.01, "overhead_s": 10.0, "energy_min_window_s": 10.0}


def log(msg: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {msg}", flush=True)


# =============================================================================== arguments


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", required=True, help="directory for results.json and results.md")
    p.add_argument("--work", default="/tmp/bench_vllm", help="logs, Parquet store, bench serve output")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    p.add_argument("--gpu", default="auto", help="gpu config option (auto: from the card's NVML name)")
    p.add_argument("--model", default="llama2_7b")
    p.add_argument("--batch-sizes", default="1,8,64,256")
    p.add_argument("--max-num-batched-tokens", type=int, default=8192,
                   help="pinned on every side (vLLM's defaults differ: LLM 16384, serve 8192 on H100); 0 = defaults")
    p.add_argument("--server-batch-size", type=int, default=256, help="--max-num-seqs of the chat server")
    p.add_argument("--chat-duration-s", type=float, default=30.0, help="measured window of chat_medium")
    p.add_argument("--sampler-batch-size", type=int, default=64)
    p.add_argument("--sampler-trials", type=int, default=6, help="(d) trials, half on half off (ABBA order)")
    p.add_argument("--sampler-batches", type=int, default=3, help="(d) static batches per trial")
    p.add_argument("--energy-window-s", type=float, default=12.0)
    p.add_argument("--budget-s", type=float, default=540.0, help="skip parts that no longer fit")
    p.add_argument("--report-only", action="store_true", help="rebuild results.md from --out/results.json")
    p.add_argument("--merge", nargs="*", default=[], metavar="RESULTS_JSON",
                   help="with --report-only: results.json files of separate runs (e.g. one per part), later wins")
    p.add_argument("--worker", choices=("bare", "server"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def detect_gpu() -> str:
    from orchestrator.gpuinfo import assigned_gpu

    name = assigned_gpu().name
    for needle, option in (("H200", "h200"), ("H100", "h100"), ("A100", "a100"), ("A800", "a800"), ("T4", "t4")):
        if needle in name:
            return option
    raise SystemExit(f"no conf/gpu option for {name}; pass --gpu")


def overrides(args, workload: str) -> List[str]:
    """The config overrides every side of a comparison shares."""
    o = [f"model={args.model}", f"gpu={args.gpu}", "engine=vllm", "sampler=nvml", f"workload={workload}"]
    if args.max_num_batched_tokens:
        o.append(f"engine.vllm.max_num_batched_tokens={args.max_num_batched_tokens}")
    if workload == "offline":
        o += ["workload.input.mean_tokens=128", "workload.output.mean_tokens=128",
              "workload.warmup_batches=1", "workload.num_batches=4"]
    else:
        o.append(f"workload.duration_s={args.chat_duration_s}")
    return o


def compose_cell(over: List[str], batch_size: int) -> Dict:
    """The canonical cell config the orchestrator would build for these overrides."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from orchestrator.config import register_configs
    from orchestrator.grid import canonical
    from orchestrator.sweep import plain

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=over + [f"batch_size={batch_size}"])
    return canonical(plain(cfg), 0)


def batch_sizes(args) -> List[int]:
    return [int(b) for b in args.batch_sizes.split(",")]


def write_json(path: Path, doc: Dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)


# =============================================================================== driver


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(ROOT)) if p)
    env.update(PYTHONUNBUFFERED="1", RAY_DEDUP_LOGS="0", HF_HUB_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)
    return env


def run_child(name: str, cmd: List[str], timeout_s: float, work: Path) -> Dict:
    """Run a part's process (own session), echoing its ``[bench]`` lines; kill it at timeout."""
    path = work / f"{name}.log"
    log(f"{name}: start (limit {timeout_s:.0f} s) log {path}")
    t0 = time.monotonic()
    with open(path, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        rc = _follow(proc, path, t0 + timeout_s)
    wall = time.monotonic() - t0
    out = {"rc": rc, "wall_s": wall, "log": str(path)}
    if rc != 0:
        out["log_tail"] = path.read_text(errors="replace")[-4000:]
    log(f"{name}: done rc={rc} in {wall:.0f} s")
    return out


def _follow(proc: subprocess.Popen, path: Path, deadline: float):
    offset = 0
    while True:
        try:
            rc = proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            rc = None
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        offset += len(chunk)
        for line in chunk.decode(errors="replace").splitlines():
            if line.startswith(("[bench]", "sweep ", "dispatched ", "engine=auto")):
                print("   " + line, flush=True)
        if rc is not None:
            return rc
        if time.monotonic() > deadline:
            for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
            return "timeout"


def main(argv=None) -> int:
    args = parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    if args.report_only:
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        for other in args.merge:
            doc = json.loads(Path(other).read_text())
            results.update({k: v for k, v in doc.items() if k in PARTS and "skipped" not in v})
            results.setdefault("meta", doc.get("meta", {}))
        write_json(results_path, results)
        write_report(out, results)
        return 0
    if args.gpu == "auto":
        args.gpu = detect_gpu()
    if args.worker:
        return {"bare": bare_worker, "server": server_worker}[args.worker](args)
    return drive(args, out, work, results_path)


def drive(args, out: Path, work: Path, results_path: Path) -> int:
    """Run the parts in order within the budget; results.json/md after each."""
    t_start = time.monotonic()
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["meta"] = meta(args)
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        left = args.budget_s - (time.monotonic() - t_start)
        if left < PART_MIN_S[part]:
            why = f"{left:.0f} s of the {args.budget_s:.0f} s budget left; needs ~{PART_MIN_S[part]:.0f} s"
            results[part] = {"skipped": why}
            log(f"{part}: skipped ({results[part]['skipped']})")
            continue
        try:
            results[part] = PART_RUNNERS[part](args, work, left)
        except Exception:
            results[part] = {"error": traceback.format_exc()[-4000:]}
            log(f"{part}: failed in the driver:\n{results[part]['error']}")
        results["meta"]["elapsed_s"] = time.monotonic() - t_start
        write_json(results_path, results)
        write_report(out, results)
    log(f"all parts done in {time.monotonic() - t_start:.0f} s: {results_path} and {out / 'results.md'}")
    return 0


def meta(args) -> Dict:
    from orchestrator.gpuinfo import assigned_gpu

    m = {"argv": sys.argv, "gpu_option": args.gpu, "model": args.model, "unix_time": time.time(),
         "max_num_batched_tokens": args.max_num_batched_tokens or "vLLM default"}
    try:
        g = assigned_gpu()
        m.update(gpu_name=g.name, gpu_uuid=g.uuid, driver=g.driver_version, cuda_driver=g.cuda_driver_version)
    except Exception as exc:
        m["gpu_error"] = str(exc)
    try:
        from importlib.metadata import version

        m.update(vllm=version("vllm"), torch=version("torch"), ray=version("ray"))
    except Exception:
        pass
    return m


# =============================================================================== part: offline (orchestrator)


def part_offline(args, work: Path, budget_s: float) -> Dict:
    store = work / "orch_offline"
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, "-m", "orchestrator", "-m", f"batch_size={args.batch_sizes}", *overrides(args, "offline"),
           f"store.dir={store}", "name=bench_vllm_offline", "dispatch.progress=false"]
    res = run_child("offline", cmd, budget_s, work)
    res["command"] = " ".join(cmd[1:])
    try:
        res.update(offline_cells(store, res["wall_s"]))
    except Exception:
        res["read_error"] = traceback.format_exc()[-3000:]
    return res


def offline_cells(store: Path, wall_s: float) -> Dict:
    """Per batch size: tok/s, window, energy; and the orchestrator's overhead per cell (e)."""
    from orchestrator.store import load

    t = load(str(store))
    reqs = t.requests.to_pandas() if t.requests is not None else None
    rows = sorted(t.runs.to_pylist(), key=lambda r: r.get("started_unix_s") or 0)
    cells, overhead = {}, {}
    ok = [r for r in rows if r["status"] == "ok"]
    for i, r in enumerate(rows):
        cells[str(r["batch_size"])] = {k: r.get(k) for k in (
            "status", "error", "output_throughput_tok_s", "window_s", "n_requests_measured", "output_tokens_in_window",
            "energy_j", "energy_integrated_j", "energy_mismatch", "short_window", "mean_power_w", "idle_power_w",
            "ttft_p50_ms", "tpot_p50_ms", "engine_start_s", "cell_wall_s", "started_unix_s", "finished_unix_s")}
    if ok:
        overhead = cell_overheads(ok, reqs, wall_s)
    return {"cells": cells, "overhead": overhead}


def cell_overheads(rows: List[Dict], reqs, wall_s: float) -> Dict:
    """(e): the sweep's wall time not spent in vLLM's own start-up (``import vllm`` +
    ``LLM(...)``), the measured windows, the warm-up batches or the idle baseline, per cell.
    ``rows``: ok runs rows in start order; ``reqs``: the requests table (pandas)."""
    starts = {}  # one engine start per unit: cells of a unit share engine_start_s
    for r in rows:
        extra = json.loads(r["engine_extra"] or "{}")
        starts[r["engine_start_s"]] = float(extra.get("vllm_start_s", r["engine_start_s"]))
    engine_start_s, vllm_start_s = sum(starts), sum(starts.values())
    sampler = json.loads(rows[0]["config_json"])["sampler"]
    idle_s = float(sampler["idle_baseline_s"]) if sampler["name"] != "none" else 0.0
    per_cell = {}
    for i, r in enumerate(rows):
        warm = reqs[(reqs.cell_id == r["cell_id"]) & (reqs.phase == "warmup")] if reqs is not None else []
        warm_s = float(warm.end_s.max() - warm.send_s.min()) if len(warm) else 0.0
        idle = idle_s if i == 0 else 0.0  # the first cell of the engine measures the idle baseline
        in_cell = float(r["cell_wall_s"]) - float(r["window_s"]) - warm_s - idle
        per_cell[str(r["batch_size"])] = {"in_cell_s": in_cell, "warmup_s": warm_s, "window_s": r["window_s"],
                                          "idle_baseline_s": idle}
    outside = wall_s - engine_start_s - sum(float(r["cell_wall_s"]) for r in rows)
    prestart = engine_start_s - vllm_start_s  # GPU check, memory wait, model dir (ours)
    shared = (outside + prestart) / len(rows)
    for v in per_cell.values():
        v["total_s"] = v["in_cell_s"] + shared
    return {"sweep_wall_s": wall_s, "vllm_start_s": vllm_start_s, "engine_start_s": engine_start_s,
            "engine_starts": len(starts), "outside_cells_s": outside, "prestart_s": prestart,
            "shared_per_cell_s": shared, "per_cell": per_cell,
            "max_per_cell_s": max(v["total_s"] for v in per_cell.values())}


# =============================================================================== part: bare vLLM


def part_bare(args, work: Path, budget_s: float) -> Dict:
    path = work / "bare.json"
    path.unlink(missing_ok=True)
    res = run_child("bare", worker_cmd(args, "bare"), budget_s, work)
    if path.exists():
        res.update(json.loads(path.read_text()))
    return res


def worker_cmd(args, worker: str) -> List[str]:
    keep = ("--out", args.out, "--work", args.work, "--gpu", args.gpu, "--model", args.model,
            "--batch-sizes", args.batch_sizes, "--max-num-batched-tokens", str(args.max_num_batched_tokens),
            "--server-batch-size", str(args.server_batch_size), "--chat-duration-s", str(args.chat_duration_s),
            "--sampler-batch-size", str(args.sampler_batch_size), "--sampler-trials", str(args.sampler_trials),
            "--sampler-batches", str(args.sampler_batches), "--energy-window-s", str(args.energy_window_s))
    return [sys.executable, str(Path(__file__).resolve()), *keep, "--worker", worker]


def offline_batches(llm_cfg: Dict, batch_size: int, seed_offset: int = 0):
    """[(phase, prompts, SamplingParams list)] of the orchestrator's offline plan, built the way
    ``VllmOfflineEngine`` builds them (same prompt ids, same sampling parameters)."""
    from vllm import SamplingParams

    from orchestrator.engines.vllm_offline import prompt_ids, sampling_kwargs
    from orchestrator.workload import build_plan

    plan = build_plan(llm_cfg["workload"], batch_size, 0)
    vocab = int(llm_cfg["model"]["vocab_size"])
    by_batch: Dict[int, list] = {}
    for s in plan.requests:
        by_batch.setdefault(s.batch_index, []).append(s)
    out = []
    for _, specs in sorted(by_batch.items()):
        prompts = [{"prompt_token_ids": prompt_ids(s, plan.seed + seed_offset, vocab)} for s in specs]
        out.append((specs[0].phase, prompts, [SamplingParams(**sampling_kwargs(s, plan.ignore_eos)) for s in specs]))
    return out


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


def bare_worker(args) -> int:
    from orchestrator.engines.vllm_offline import cache_env, engine_args, model_path, wait_for_gpu_memory
    from orchestrator.gpuinfo import assigned_gpu

    sizes = batch_sizes(args)
    cfg = compose_cell(overrides(args, "offline"), max(sizes))
    gpu = assigned_gpu()
    seen = wait_for_gpu_memory(gpu, cfg["engine"]["vllm"]["gpu_memory_utilization"])  # the last part's exit
    log(f"bare: GPU memory {seen}")
    os.environ.update(cache_env(cfg))
    os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # as VllmOfflineEngine does
    kwargs = engine_args(cfg, max(sizes), str(model_path(cfg)))
    out_path = Path(args.work) / "bare.json"
    res: Dict = {"engine_args": {k: v for k, v in kwargs.items() if k != "model"}, "offline": {}}
    log(f"bare: vllm.LLM(max_num_seqs={max(sizes)}) ...")
    t0 = time.monotonic()
    from vllm import LLM

    llm = LLM(**kwargs)
    res["vllm_start_s"] = time.monotonic() - t0
    log(f"bare: engine up in {res['vllm_start_s']:.0f} s")
    uuid = gpu.uuid
    steps = [("offline", lambda: bare_offline(llm, cfg, sizes, res)),
             ("sampler_on_off", lambda: bare_sampler(llm, cfg, uuid, args)),
             ("energy_window", lambda: bare_energy(llm, cfg, uuid, max(sizes), args.energy_window_s))]
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


def bare_offline(llm, cfg: Dict, sizes: List[int], res: Dict) -> None:
    for bs in sizes:
        r = generate_loop(llm, offline_batches(cfg, bs))
        res["offline"][str(bs)] = {k: r[k] for k in ("output_tok_s", "output_tokens", "window_s")}
        log(f"bare: batch {bs}: {r['output_tok_s']:.0f} output tok/s")


def bare_sampler(llm, cfg: Dict, uuid: str, args) -> Dict:
    """(d): ABBA-ordered trials with the NVML sampler thread off and on."""
    from orchestrator.energy.nvml import NvmlSampler

    batches = [b for b in offline_batches(cfg, args.sampler_batch_size, seed_offset=17) if b[0] == "measured"]
    batches = (batches * args.sampler_batches)[: args.sampler_batches]
    generate_loop(llm, [("warmup", *batches[0][1:])])
    order = ["off", "on", "on", "off"] * ((args.sampler_trials + 3) // 4)
    tok_s: Dict[str, List[float]] = {"on": [], "off": []}
    for mode in order[: args.sampler_trials]:
        sampler = NvmlSampler(uuid, float(cfg["sampler"]["interval_s"])) if mode == "on" else None
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


def bare_energy(llm, cfg: Dict, uuid: str, batch_size: int, window_s: float) -> Dict:
    """(c): one busy window of at least ``window_s``: counter delta vs integrated instant power."""
    from orchestrator.energy.base import window_energy
    from orchestrator.energy.nvml import NvmlSampler

    measured = [b for b in offline_batches(cfg, batch_size, seed_offset=31) if b[0] == "measured"]
    sampler = NvmlSampler(uuid, float(cfg["sampler"]["interval_s"]))
    sampler.start()
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < window_s:
        llm.generate(measured[i % len(measured)][1], measured[i % len(measured)][2], use_tqdm=False)
        i += 1
    t1 = time.monotonic()
    trace = sampler.stop()
    row = window_energy(trace, int(t0 * 1e9), int(t1 * 1e9), None)
    log(f"bare: energy window {t1 - t0:.1f} s: counter {row['energy_j']:.0f} J, "
        f"integrated {row['energy_integrated_j']:.0f} J")
    return {"batch_size": batch_size, "window_s": t1 - t0, "batches": i, "note": trace.note,
            **{k: row[k] for k in ("energy_j", "energy_integrated_j", "energy_mismatch", "mean_power_w",
                                   "max_power_w", "counter_update_period_s", "short_window")}}


# =============================================================================== part: server


def part_server(args, work: Path, budget_s: float) -> Dict:
    path = work / "server.json"
    path.unlink(missing_ok=True)
    res = run_child("server", worker_cmd(args, "server"), budget_s, work)
    if path.exists():
        res.update(json.loads(path.read_text()))
    return res


def server_worker(args) -> int:
    from orchestrator.engines.vllm_server import VllmServerEngine

    cfg = compose_cell(overrides(args, "chat_medium"), args.server_batch_size)
    out_path = Path(args.work) / "server.json"
    res: Dict = {"batch_size": args.server_batch_size, "workload": cfg["workload"]}
    engine = VllmServerEngine(cfg, args.server_batch_size)
    log(f"server: vllm serve --max-num-seqs {args.server_batch_size} ...")
    t0 = time.monotonic()
    try:
        engine.start()
        res["vllm_start_s"] = time.monotonic() - t0
        log(f"server: healthy in {res['vllm_start_s']:.0f} s")
        for key, step in (("orchestrator", lambda: server_orchestrator(engine, cfg)),
                          ("bench_serve", lambda: server_bench(engine, cfg, Path(args.work)))):
            try:
                res[key] = step()
            except Exception:
                res[f"{key}_error"] = traceback.format_exc()[-3000:]
                log(f"server: {key} failed:\n{res[f'{key}_error']}")
            write_json(out_path, res)
    except Exception:
        res["start_error"] = traceback.format_exc()[-3000:]
    finally:
        engine.stop()
        res["stop_report"] = engine.stop_report
        write_json(out_path, res)
    return 0


def server_orchestrator(engine, cfg: Dict) -> Dict:
    """The orchestrator's client path (``VllmServerEngine.run``) with the sampler on."""
    from orchestrator import metrics
    from orchestrator.energy.base import window_energy
    from orchestrator.energy.nvml import NvmlSampler
    from orchestrator.workload import build_plan

    plan = build_plan(cfg["workload"], engine.max_batch_size, 0)
    sampler = NvmlSampler(engine.gpu_uuid(), float(cfg["sampler"]["interval_s"]))
    sampler.start()
    try:
        wr = engine.run(plan)
    finally:
        trace = sampler.stop()
    row = metrics.summarize(wr, plan.rate_rps, plan.ignore_eos)
    energy = window_energy(trace, int(wr.window_start_s * 1e9), int(wr.window_end_s * 1e9), None)
    keep = ("window_s", "n_requests_measured", "n_requests_failed", "offered_rate_rps", "scheduled_rate_rps",
            "achieved_rate_rps", "request_throughput_rps", "output_throughput_tok_s", "ttft_p50_ms", "ttft_p99_ms",
            "tpot_p50_ms", "tpot_p99_ms", "itl_p50_ms", "e2e_p50_ms", "mean_running_batch", "saturated",
            "token_count_mismatch", "input_tokens_per_request_mean")
    out = {k: row[k] for k in keep}
    out["energy"] = {k: energy[k] for k in ("energy_j", "energy_integrated_j", "energy_mismatch", "mean_power_w",
                                            "counter_update_period_s", "short_window")}
    out["client"] = {k: v for k, v in wr.extra.items() if k.startswith("send_late")}
    out["measured_requests"] = [(s.index, s.input_tokens, s.output_tokens) for s in plan.measured]
    log(f"server: orchestrator achieved {row['achieved_rate_rps']:.2f} req/s, TTFT p50 {row['ttft_p50_ms']:.1f} ms, "
        f"TPOT p50 {row['tpot_p50_ms']:.2f} ms")
    return out


def server_bench(engine, cfg: Dict, work: Path) -> Dict:
    """``vllm bench serve`` against the same server: the same lengths, in the same order, other prompt ids."""
    from orchestrator.engines.vllm_offline import model_path, prompt_ids
    from orchestrator.workload import build_plan

    plan = build_plan(cfg["workload"], engine.max_batch_size, 0)
    vocab = int(cfg["model"]["vocab_size"])
    data = work / "bench_serve_dataset.jsonl"
    with open(data, "w") as f:
        for s in plan.measured:  # the tokenizer maps the word "t<id>" to token <id>: exact lengths
            words = " ".join(f"t{i}" for i in prompt_ids(s, plan.seed + 7919, vocab))
            f.write(json.dumps({"prompt": words, "output_tokens": s.output_tokens}) + "\n")
    result = work / "bench_serve.json"
    result.unlink(missing_ok=True)
    n = len(plan.measured)
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "vllm",
           "--base-url", engine.base_url, "--endpoint", "/v1/completions", "--model", str(model_path(cfg)),
           "--served-model-name", cfg["model"]["name"], "--tokenizer", str(model_path(cfg)),
           "--dataset-name", "custom", "--dataset-path", str(data), "--custom-output-len=-1",
           "--skip-chat-template", "--disable-shuffle", "--num-prompts", str(n),
           "--request-rate", str(plan.rate_rps), "--burstiness", "1.0", "--ignore-eos", "--temperature", "0",
           "--seed", str(plan.seed), "--num-warmups", "10", "--percentile-metrics", "ttft,tpot,itl,e2el",
           "--metric-percentiles", "50,90,99", "--save-result", "--result-dir", str(work),
           "--result-filename", result.name, "--disable-tqdm"]
    log(f"server: vllm bench serve, {n} requests at {plan.rate_rps} req/s ...")
    env = {**child_env(), "OPENAI_API_KEY": engine.api_key}
    with open(work / "bench_serve.log", "wb") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=n / plan.rate_rps * 3 + 180)
    if not result.exists():
        raise RuntimeError(f"vllm bench serve exited {proc.returncode} without a result:\n"
                           + (work / "bench_serve.log").read_text(errors="replace")[-3000:])
    raw = json.loads(result.read_text())
    keep = ("duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
            "output_throughput", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_tpot_ms", "median_itl_ms",
            "median_e2el_ms", "request_rate", "burstiness", "num_prompts")
    out = {k: raw.get(k) for k in keep}
    out["command"] = " ".join(cmd[1:])
    log(f"server: bench serve TTFT p50 {out['median_ttft_ms']:.1f} ms, TPOT p50 {out['median_tpot_ms']:.2f} ms, "
        f"{out['request_throughput']:.2f} req/s")
    return out


PART_RUNNERS = {"offline": part_offline, "bare": part_bare, "server": part_server}


# =============================================================================== report


def _rel(a, b) -> Optional[float]:
    try:
        return (float(a) - float(b)) / float(b)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _ok(flag: Optional[bool]) -> str:
    return "n/a" if flag is None else ("PASS" if flag else "FAIL")


def checks(results: Dict) -> List[Dict]:
    """One row per target: what, measured, target, pass."""
    rows: List[Dict] = []
    off = results.get("offline", {}).get("cells", {})
    bare = results.get("bare", {}).get("offline", {})
    for bs in sorted(set(off) | set(bare), key=int):
        o, b = (off.get(bs) or {}).get("output_throughput_tok_s"), (bare.get(bs) or {}).get("output_tok_s")
        ratio = o / b if o and b else None
        rows.append({"check": f"(a) offline output tok/s, batch {bs}", "measured":
                     f"orchestrator {o or float('nan'):.0f} / bare {b or float('nan'):.0f} = "
                     f"{(ratio or float('nan')) * 100:.1f}%", "target": ">= 97%",
                     "pass": None if ratio is None else ratio >= TARGETS["offline_ratio"]})
    rows += server_checks(results.get("server", {}))
    rows += energy_checks(results)
    d = results.get("bare", {}).get("sampler_on_off")
    if d:
        rel = d["on_over_off"] - 1
        rows.append({"check": f"(d) tok/s with sampler on vs off (batch {d['batch_size']}, medians of "
                              f"{len(d['trials']['on'])}+{len(d['trials']['off'])} trials)",
                     "measured": f"{d['median_on_tok_s']:.0f} vs {d['median_off_tok_s']:.0f} ({rel * 100:+.2f}%; "
                                 f"off-trial spread {d['off_spread_rel'] * 100:.2f}%)",
                     "target": "within 1%", "pass": abs(rel) <= TARGETS["sampler_rel"]})
    ov = results.get("offline", {}).get("overhead")
    if ov:
        rows.append({"check": "(e) orchestrator time per cell beyond vLLM start-up and the window",
                     "measured": f"max {ov['max_per_cell_s']:.1f} s (in-cell " + ", ".join(
                         f"bs{k}: {v['in_cell_s']:.1f}" for k, v in ov["per_cell"].items())
                                 + f"; + {ov['shared_per_cell_s']:.1f} s/cell: Ray/process/driver "
                                   f"{ov['outside_cells_s']:.1f} s + pre-start {ov['prestart_s']:.1f} s shared by "
                                   f"{len(ov['per_cell'])} cells; vLLM start-up {ov['vllm_start_s']:.0f} s excluded)",
                     "target": "<= 10 s", "pass": ov["max_per_cell_s"] <= TARGETS["overhead_s"]})
    return rows


def server_checks(srv: Dict) -> List[Dict]:
    ours, bench = srv.get("orchestrator"), srv.get("bench_serve")
    if not ours:
        return []
    rate, drawn = ours["achieved_rate_rps"], ours["scheduled_rate_rps"]
    n = ours.get("n_requests_measured") or 0
    # A Poisson draw of N arrivals deviates from the nominal rate by ~1/sqrt(N) by itself (seed 0,
    # 30 s: 18.9 req/s): the client is judged against the schedule it was given.
    rows = [{"check": "(b) achieved arrival rate, chat_medium (Poisson 20 req/s)",
             "measured": f"{rate:.2f} req/s: {_rel(rate, drawn) * 100:+.2f}% vs the drawn schedule ({drawn:.2f} req/s, "
                         f"{_rel(drawn, 20.0) * 100:+.1f}% vs 20 by Poisson sampling, +-{100 / max(n, 1) ** 0.5:.1f}% "
                         f"expected); {_rel(rate, 20.0) * 100:+.1f}% vs 20; send lateness p99 "
                         f"{ours['client'].get('send_late_p99_ms', float('nan')):.1f} ms",
             "target": "within 2% (of the schedule)", "pass": abs(_rel(rate, drawn)) <= TARGETS["rate_rel"]}]
    if bench:
        for name, a, b in (("TTFT p50", ours["ttft_p50_ms"], bench.get("median_ttft_ms")),
                           ("TPOT p50", ours["tpot_p50_ms"], bench.get("median_tpot_ms"))):
            rel = _rel(a, b)
            rows.append({"check": f"(b) {name} vs vllm bench serve (same server, same lengths)",
                         "measured": f"{a:.2f} ms vs {b or float('nan'):.2f} ms ({(rel or float('nan')) * 100:+.1f}%)",
                         "target": "within 10%", "pass": None if rel is None else abs(rel) <= TARGETS["latency_rel"]})
    return rows


def energy_windows(results: Dict) -> List[Dict]:
    out = []
    for bs, c in (results.get("offline", {}).get("cells") or {}).items():
        if c.get("energy_j") and c.get("window_s"):
            out.append({"where": f"orchestrator offline batch {bs}", "window_s": c["window_s"],
                        "counter_j": c["energy_j"], "integrated_j": c["energy_integrated_j"]})
    e = results.get("bare", {}).get("energy_window")
    if e and e.get("energy_j"):
        out.append({"where": f"bare busy window batch {e['batch_size']}", "window_s": e["window_s"],
                    "counter_j": e["energy_j"], "integrated_j": e["energy_integrated_j"]})
    s = (results.get("server", {}).get("orchestrator") or {}).get("energy")
    if s and s.get("energy_j"):
        out.append({"where": "server chat_medium window", "window_s": results["server"]["orchestrator"]["window_s"],
                    "counter_j": s["energy_j"], "integrated_j": s["energy_integrated_j"]})
    for w in out:
        w["rel"] = _rel(w["integrated_j"], w["counter_j"])
    return out


def energy_checks(results: Dict) -> List[Dict]:
    rows = []
    for w in energy_windows(results):
        long = w["window_s"] >= TARGETS["energy_min_window_s"]
        rows.append({"check": f"(c) counter vs integrated instant power, {w['where']}",
                     "measured": f"{w['counter_j']:.0f} J vs {w['integrated_j']:.0f} J ({w['rel'] * 100:+.2f}%) "
                                 f"over {w['window_s']:.1f} s",
                     "target": "within 5% (windows >= 10 s)",
                     "pass": (abs(w["rel"]) <= TARGETS["energy_rel"]) if long else None})
    return rows


def write_report(out: Path, results: Dict) -> None:
    m = results.get("meta", {})
    versions = (f"vllm {m.get('vllm', '?')}, torch {m.get('torch', '?')}, ray {m.get('ray', '?')}, driver "
                f"{m.get('driver', '?')} (CUDA {m.get('cuda_driver', '?')}); model {m.get('model')} (dummy weights, "
                f"fp16); max_num_batched_tokens {m.get('max_num_batched_tokens')} on every side; "
                f"elapsed {m.get('elapsed_s', 0):.0f} s.")
    lines = [f"# vLLM through the orchestrator vs bare vLLM — {m.get('gpu_name', '?')}", "", versions, "",
             "| check | measured | target | result |", "| --- | --- | --- | --- |"]
    for r in checks(results):
        lines.append(f"| {r['check']} | {r['measured']} | {r['target']} | {_ok(r['pass'])} |")
    lines.append("")
    for part in PARTS:
        p = results.get(part, {})
        for key in ("skipped", "error", "read_error", "start_error", "orchestrator_error", "bench_serve_error",
                    "offline_error", "sampler_on_off_error", "energy_window_error"):
            if p.get(key):
                lines += [f"**{part}: {key}**", "", "```", str(p[key])[-1500:], "```", ""]
        if p.get("rc") not in (None, 0):
            lines += [f"**{part}: exit {p['rc']}** (log {p.get('log')})", "", "```", str(p.get("log_tail", ""))[-1500:],
                      "```", ""]
    lines += ["Timings: " + ", ".join(f"{part} {results[part].get('wall_s', 0):.0f} s" for part in PARTS
                                      if isinstance(results.get(part), dict) and "wall_s" in results[part]), "",
              "Every number is in results.json; the method is in scripts/bench_vllm.py's docstring.", ""]
    (out / "results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
