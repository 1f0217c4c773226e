"""Part ``server``: a ``VllmServerEngine`` (the orchestrator's ``vllm serve`` + streaming client)
runs ``chat_medium`` with the sampler on, then ``vllm bench serve`` runs against the same server
with the same request lengths (other prompt ids) at the same rate. Runs in the worker process
(``bench_vllm.py --worker server``); writes ``server.json``."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List

from benchvllm.common import compose_cell, log, overrides, write_json
from benchvllm.procs import child_env, run_part

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

CLIENT_KEYS = ("window_s", "n_requests_measured", "n_requests_failed", "offered_rate_rps", "scheduled_rate_rps",
               "achieved_rate_rps", "request_throughput_rps", "output_throughput_tok_s", "ttft_p50_ms", "ttft_p99_ms",
               "tpot_p50_ms", "tpot_p99_ms", "itl_p50_ms", "e2e_p50_ms", "mean_running_batch", "saturated",
               "token_count_mismatch", "input_tokens_per_request_mean")
ENERGY_KEYS = ("energy_j", "energy_integrated_j", "energy_mismatch", "mean_power_w", "counter_update_period_s",
               "short_window")
BENCH_KEYS = ("duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
              "output_throughput", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_tpot_ms", "median_itl_ms",
              "median_e2el_ms", "request_rate", "burstiness", "num_prompts")


def part_server(args, work: Path, budget_s: float) -> Dict:
    return run_part("server", args, work, budget_s)


def server_worker(args) -> int:
    """Start the server, run the orchestrator's client then ``vllm bench serve`` against it (a
    failed one keeps the other), stop it; ``server.json`` after each step."""
    from orchestrator.config.fields import as_plain
    from orchestrator.engines import engine_for

    cfg = compose_cell(overrides(args, "chat_medium"), args.server_batch_size)
    out_path = Path(args.work) / "server.json"
    res: Dict = {"batch_size": args.server_batch_size, "workload": as_plain(cfg.workload)}
    engine = engine_for("vllm", cfg.workload.kind)(cfg, args.server_batch_size)  # VllmServerEngine
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
        res["stop_report"] = engine.stop_report()
        write_json(out_path, res)
    return 0


def server_orchestrator(engine, cfg: "CellConfig") -> Dict:
    """The orchestrator's client path (``VllmServerEngine.run``) with the sampler on."""
    from orchestrator.client import metrics
    from orchestrator.client.workload import build_plan
    from orchestrator.energy.base import window_energy
    from orchestrator.energy.nvml import NvmlSampler

    plan = build_plan(cfg.workload, engine.max_batch_size, 0)
    sampler = NvmlSampler(engine.gpu_uuid(), float(cfg.sampler.interval_s))
    sampler.start()
    try:
        wr = engine.run(plan)
    finally:
        trace = sampler.stop()
    row = metrics.summarize(wr, plan.rate_rps, plan.ignore_eos)
    energy = window_energy(trace, int(wr.window_start_s * 1e9), int(wr.window_end_s * 1e9), None)
    out = {k: row[k] for k in CLIENT_KEYS}
    out["energy"] = {k: energy[k] for k in ENERGY_KEYS}
    out["client"] = {k: row[k] for k in ("send_lag_p50_ms", "send_lag_p99_ms", "send_lag_max_ms")}
    out["measured_requests"] = [(s.index, s.input_tokens, s.output_tokens) for s in plan.measured]
    log(f"server: orchestrator achieved {row['achieved_rate_rps']:.2f} req/s, TTFT p50 {row['ttft_p50_ms']:.1f} ms, "
        f"TPOT p50 {row['tpot_p50_ms']:.2f} ms")
    return out


def server_bench(engine, cfg: "CellConfig", work: Path) -> Dict:
    """``vllm bench serve`` against the same server: the same lengths, in the same order, other prompt ids."""
    from orchestrator.client.workload import build_plan

    plan = build_plan(cfg.workload, engine.max_batch_size, 0)
    data = bench_dataset(plan, int(cfg.model.vocab_size), work / "bench_serve_dataset.jsonl")
    result = work / "bench_serve.json"
    result.unlink(missing_ok=True)
    n = len(plan.measured)
    cmd = bench_serve_cmd(engine, cfg, plan, data, result)
    log(f"server: vllm bench serve, {n} requests at {plan.rate_rps} req/s ...")
    env = {**child_env(), "OPENAI_API_KEY": engine.api_key}
    with open(work / "bench_serve.log", "wb") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=n / plan.rate_rps * 3 + 180)
    if not result.exists():
        raise RuntimeError(f"vllm bench serve exited {proc.returncode} without a result:\n"
                           + (work / "bench_serve.log").read_text(errors="replace")[-3000:])
    raw = json.loads(result.read_text())
    out = {k: raw.get(k) for k in BENCH_KEYS}
    out["command"] = " ".join(cmd[1:])
    log(f"server: bench serve TTFT p50 {out['median_ttft_ms']:.1f} ms, TPOT p50 {out['median_tpot_ms']:.2f} ms, "
        f"{out['request_throughput']:.2f} req/s")
    return out


def bench_dataset(plan, vocab_size: int, path: Path) -> Path:
    """A ``custom`` dataset of the plan's measured requests: their lengths, other prompt ids (so
    no prefix cache is shared with the orchestrator's run)."""
    from orchestrator.client.model_files import prompt_ids

    with open(path, "w") as f:
        for s in plan.measured:  # the tokenizer maps the word "t<id>" to token <id>: exact lengths
            words = " ".join(f"t{i}" for i in prompt_ids(s, plan.seed + 7919, vocab_size))
            f.write(json.dumps({"prompt": words, "output_tokens": s.output_tokens}) + "\n")
    return path


def bench_serve_cmd(engine, cfg: "CellConfig", plan, data: Path, result: Path) -> List[str]:
    """``vllm bench serve`` at the plan's rate (Poisson), greedy, exact output lengths."""
    from orchestrator.engines.vllm.common import model_path

    model = str(model_path(cfg))
    return [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "vllm",
            "--base-url", engine.base_url, "--endpoint", "/v1/completions", "--model", model,
            "--served-model-name", cfg.model.name, "--tokenizer", model,
            "--dataset-name", "custom", "--dataset-path", str(data), "--custom-output-len=-1",
            "--skip-chat-template", "--disable-shuffle", "--num-prompts", str(len(plan.measured)),
            "--request-rate", str(plan.rate_rps), "--burstiness", "1.0", "--ignore-eos", "--temperature", "0",
            "--seed", str(plan.seed), "--num-warmups", "10", "--percentile-metrics", "ttft,tpot,itl,e2el",
            "--metric-percentiles", "50,90,99", "--save-result", "--result-dir", str(result.parent),
            "--result-filename", result.name, "--disable-tqdm"]
