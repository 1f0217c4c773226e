"""Benchmark: vLLM through the orchestrator vs bare vLLM, and the NVML sampler, on one GPU.

    export PYTHONPATH=/root/site:$PWD
    python scripts/bench_vllm.py --out experiments/benchmarks/vllm_h100     # all parts, ~7-9 min on an H100
    python scripts/bench_vllm.py --out DIR --parts offline,bare            # a subset (e.g. two runs of < 10 min)
    python scripts/bench_vllm.py --out DIR --report-only [--merge A/results.json B/results.json]  # rebuild the table

Three parts, each in its own process (one vLLM engine at a time on the GPU; a failed part keeps
the others' numbers), with the same engine arguments on both sides of every comparison
(``vllm_common.engine_args`` of the same cell config; ``--max-num-batched-tokens`` pins the
one default that differs between ``LLM`` and ``vllm serve``, which also lets both reuse one
compile cache):

``offline``  ``python -m orchestrator -m batch_size=1,8,64,256 workload=offline engine=vllm
             sampler=nvml repeats=N`` (128 in / 128 out, 1 warm-up + at least 4 measured static
             batches and at least ``min_window_s`` = 10 s, one shared engine start). With
             ``--repeats N`` >= 2 also (f): the CV of tok/s and J/token over the repeats. Gives (a) output tok/s per batch size, (c) counter vs integrated
             energy for windows >= 10 s, and (e) the time the orchestrator adds per cell beyond
             vLLM's own start-up (``import vllm`` + ``LLM(...)``), the measured windows, the warm-up
             batches and the idle baseline: Ray start and scheduling, worker process, GPU checks,
             model directory, sampler, metrics, Parquet writes, driver exit.
``bare``     one ``vllm.LLM(**same args)`` and a plain ``LLM.generate`` loop over the same
             prompts and sampling parameters: (a) the reference tok/s; (d) tok/s with the
             NVML sampler thread on vs off (alternating ABBA trials at ``--sampler-batch-size``);
             (c) a ``--energy-window-s`` busy window at ``--energy-batch-size``, counter vs
             integrated instant power, sampled every ``--energy-trace-interval-s`` (10 ms); its
             raw trace goes to ``--out/energy_trace.npz`` for ``scripts/energy_crosscheck.py``.
``server``   a ``VllmServerEngine`` (the orchestrator's ``vllm serve`` + streaming client) runs
             ``chat_medium`` (Poisson 20 req/s, ``--chat-duration-s``) with the sampler on, then
             ``vllm bench serve`` runs against the same server with the same request lengths
             (a custom dataset of the plan's measured requests, other prompt ids so no prefix
             cache is shared) at the same rate: (b) achieved arrival rate, TTFT and TPOT p50;
             (c) the chat window's energy.

Targets: (a) orchestrator >= 97% of bare at every batch size; (b) achieved rate within 2% of
20 req/s, TTFT and TPOT p50 within 10% of ``vllm bench serve``; (c) within 2% on windows >= 10 s;
(d) within 1%; (e) <= 10 s per cell; (f) CV < 2%. The arrival rate is judged against the Poisson schedule the
client was given (a 30 s draw of seed 0 holds 18.9 req/s: sampling, not the client); that draw's
deviation from 20 req/s is shown beside it.

Writes ``results.json`` (every number, after each part) and ``results.md`` (the table) under
``--out``; logs, the Parquet store and ``vllm bench serve``'s raw output go under ``--work``.
Progress lines start with ``[bench]``. The parts' code is in ``scripts/benchvllm/`` (one module
each: ``offline``, ``bare``, ``server``, ``report``; ``common`` and ``procs`` are shared).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the orchestrator
    sys.path.insert(0, str(ROOT))
if str(ROOT / "scripts") not in sys.path:  # this script's parts (scripts/benchvllm/), last: shadows nothing
    sys.path.append(str(ROOT / "scripts"))

from benchvllm.bare import bare_worker, part_bare  # noqa: E402
from benchvllm.common import PART_MIN_S, PARTS, compose_cell, log, overrides, write_json  # noqa: E402
from benchvllm.offline import cell_overheads, part_offline  # noqa: E402
from benchvllm.report import checks, write_report  # noqa: E402
from benchvllm.server import part_server, server_worker  # noqa: E402

# What tests/unit/scripts/test_vllm_bench.py uses from this script (the helpers live in scripts/benchvllm/).
__all__ = ["main", "parse_args", "compose_cell", "overrides", "checks", "cell_overheads"]

PART_RUNNERS = {"offline": part_offline, "bare": part_bare, "server": part_server}
WORKERS = {"bare": bare_worker, "server": server_worker}


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
    p.add_argument("--energy-window-s", type=float, default=15.0)
    p.add_argument("--energy-batch-size", type=int, default=64, help="(c) batch size of the bare energy window")
    p.add_argument("--energy-trace-interval-s", type=float, default=0.01,
                   help="(c) sampling interval of the bare energy window (its raw trace is kept)")
    p.add_argument("--repeats", type=int, default=1, help="offline: measured repeats of every cell (CV)")
    p.add_argument("--budget-s", type=float, default=540.0, help="skip parts that no longer fit")
    p.add_argument("--report-only", action="store_true", help="rebuild results.md from --out/results.json")
    p.add_argument("--merge", nargs="*", default=[], metavar="RESULTS_JSON",
                   help="with --report-only: results.json files of separate runs (e.g. one per part), later wins")
    p.add_argument("--worker", choices=("bare", "server"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def detect_gpu() -> str:
    from orchestrator.energy.gpuinfo import assigned_gpu

    name = assigned_gpu().name
    for needle, option in (("H200", "h200"), ("H100", "h100"), ("A100", "a100"), ("A800", "a800"), ("T4", "t4")):
        if needle in name:
            return option
    raise SystemExit(f"no conf/gpu option for {name}; pass --gpu")


def main(argv=None) -> int:
    args = parse_args(argv)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    if args.report_only:
        return report_only(out, results_path, args.merge)
    if args.gpu == "auto":
        args.gpu = detect_gpu()
    if args.worker:
        return WORKERS[args.worker](args)
    return drive(args, out, work, results_path)


def report_only(out: Path, results_path: Path, merge) -> int:
    """Rebuild results.md from results.json, first merging the parts of ``merge`` (later wins;
    skipped parts never replace measured ones)."""
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for other in merge:
        doc = json.loads(Path(other).read_text())
        results.update({k: v for k, v in doc.items() if k in PARTS and "skipped" not in v})
        results.setdefault("meta", doc.get("meta", {}))
    write_json(results_path, results)
    write_report(out, results)
    return 0


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
    from orchestrator.energy.gpuinfo import assigned_gpu

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


if __name__ == "__main__":
    sys.exit(main())
