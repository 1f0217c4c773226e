"""vLLM on the real card: the engine arguments and ``vllm serve`` command line are accepted by
vLLM's own parsers, then one offline and one server cell of llama2_7b run end to end through
``python -m orchestrator`` into Parquet (engine=vllm sampler=nvml), each ending ok with energy."""
from __future__ import annotations

import json
import time

import pytest

from orchestrator.config.root import CellConfig
from orchestrator.driver.grid import config_of
from orchestrator.energy.gpuinfo import memory_used_mib
from orchestrator.engines.vllm.common import engine_args, model_path
from orchestrator.engines.vllm.server import serve_command
from orchestrator.store.sweep_store import load
from tests.conftest import run_orchestrator

pytestmark = pytest.mark.gpu
TIMEOUT_S = 900


def cell_config(gpu_option: str, workload: str) -> CellConfig:
    return config_of(["model=llama2_7b", "quantization=none", f"gpu={gpu_option}", f"workload={workload}",
                      "engine=vllm", "sampler=nvml", "batch_size=64", "repeat=0"])


def test_vllm_accepts_our_engine_args_and_serve_flags(gpu_option, vllm_version):
    from vllm.engine.arg_utils import EngineArgs
    from vllm.entrypoints.openai.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    assert vllm_version.startswith("0.26"), vllm_version
    cfg = cell_config(gpu_option, "chat_medium")
    path = str(model_path(cfg))
    EngineArgs(**engine_args(cfg, 64, path))
    cmd = serve_command(cfg, 64, path, 8000)
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(cmd[cmd.index("serve") + 1:])
    assert args.model_tag == path and args.max_num_seqs == 64 and args.load_format == "dummy"
    assert args.enable_chunked_prefill is True and args.enforce_eager is False and args.host == "127.0.0.1"
    names = args.served_model_name if isinstance(args.served_model_name, list) else [args.served_model_name]
    assert names == ["llama2_7b"] and not args.disable_log_stats


def wait_memory_below(uuid: str, mib: float, timeout_s: float = 60.0) -> float:
    """GPU memory in use once it drops under ``mib`` (or at the timeout): the cell's processes
    (Ray worker, vllm serve group) are gone."""
    deadline = time.monotonic() + timeout_s
    used = memory_used_mib(uuid)
    while used >= mib and time.monotonic() < deadline:
        time.sleep(1.0)
        used = memory_used_mib(uuid)
    return used


def _one_row(out):
    t = load(str(out))
    [row] = t.runs.to_pylist()
    assert row["status"] == "ok", row["error"]
    return row, t


def _check_energy(row, gpu):
    assert row["engine"] == "vllm" and row["energy_source"] == "nvml" and row["gpu_uuid"] == gpu.uuid
    assert row["energy_j"] > 0 and not row["energy_invalid"] and row["idle_power_w"] > 0
    assert row["net_energy_j"] == pytest.approx(row["energy_j"] - row["baseline_energy_j"])
    assert 0 < row["mean_power_w"] < 1200 and row["energy_per_1k_output_tokens_j"] > 0
    assert json.loads(row["engine_versions"])["vllm"].startswith("0.26")


def _check_steps(row, t):
    """vLLM's own steps (the recording scheduler): every ok request's prompt and output tokens
    are in them, and the window's energy is conserved across requests and the rest."""
    assert row["step_source"] == "engine" and row["n_steps"] == t.steps.num_rows > 0
    steps, req = t.steps.to_pandas(), t.requests.to_pandas()
    prefill, decode = {}, {}
    for ids, pre, dec in zip(steps.request_index, steps.request_prefill_tokens, steps.request_decode_tokens):
        for i, p, d in zip(ids, pre, dec):
            prefill[i] = prefill.get(i, 0) + p
            decode[i] = decode.get(i, 0) + d
    for r in req[req.status == "ok"].itertuples():
        assert prefill[r.request_index] == r.input_tokens and decode[r.request_index] == r.output_tokens - 1
    assert req.energy_j.sum() + row["energy_outside_steps_j"] == pytest.approx(row["energy_j"], rel=1e-9)
    assert 0 < row["prefill_energy_share"] < 1 and row["energy_in_steps_j"] > 0.5 * row["energy_j"]


def test_offline_cell_end_to_end(tmp_path, gpu, gpu_option, vllm_version):
    out = tmp_path / "offline"
    run_orchestrator(["engine=vllm", "sampler=nvml", f"gpu={gpu_option}", "model=llama2_7b", "workload=offline",
                      "batch_size=8", "workload.num_batches=2", "sampler.idle_baseline_s=2",
                      f"store.dir={out}", "dispatch.progress=false"], timeout=TIMEOUT_S)
    row, t = _one_row(out)
    _check_energy(row, gpu)
    # at least num_batches=2 batches of 8, more until the window reaches min_window_s (10 s)
    n = row["n_batches_measured"]
    assert n >= 2 and row["window_s"] >= row["min_window_s"] == 10.0 and not row["short_window"]
    assert row["n_requests_measured"] == 8 * n and row["output_tokens_per_request_mean"] == 128
    assert row["output_tokens_in_window"] == 8 * n * 128 and not row["token_count_mismatch"]
    assert 0 <= row["batch_output_tok_s_cv"] < 0.2
    assert row["output_throughput_tok_s"] > 100 and row["ttft_p50_ms"] > 0
    extra = json.loads(row["engine_extra"])
    assert extra["request_times"]["batch_bounds"] == 0, extra  # vLLM's per-request timestamps were used
    assert t.requests.num_rows == 8 * (n + 1) and t.power.num_rows > 10  # + 1 warm-up batch
    hashes = t.requests.column("prompt_hash").to_pylist()
    assert len(set(hashes)) == len(hashes) and None not in hashes
    _check_steps(row, t)
    assert wait_memory_below(gpu.uuid, 4096) < 4096  # the worker exited and freed the card


def test_server_cell_end_to_end(tmp_path, gpu, gpu_option, vllm_version):
    out = tmp_path / "server"
    run_orchestrator(["engine=vllm", "sampler=nvml", f"gpu={gpu_option}", "model=llama2_7b", "workload=chat_medium",
                      "batch_size=128", "workload.duration_s=15", "workload.warmup_requests=10",
                      "sampler.idle_baseline_s=2", f"store.dir={out}", "dispatch.progress=false"], timeout=TIMEOUT_S)
    row, t = _one_row(out)
    _check_energy(row, gpu)
    _check_steps(row, t)
    assert row["n_requests_failed"] == 0 and row["output_tokens_per_request_mean"] == 128
    assert not row["token_count_mismatch"] and not row["short_window"]
    assert row["achieved_rate_rps"] == pytest.approx(row["scheduled_rate_rps"], rel=0.03)
    assert not row["saturated"] and 0 < row["mean_running_batch"] <= 128
    assert row["n_requests_cancelled"] == 0 and 0 <= row["drain_s"] < row["drain_timeout_s"]
    assert row["drain_timeout_s"] >= 10.0  # sized per cell (workload.drain_limit_s), never under 10 s
    assert 0 < row["ttft_p50_ms"] < 2000 and 0 < row["tpot_p50_ms"] < 200
    extra = json.loads(row["engine_extra"])
    assert extra["metrics_scrapes_in_window"] >= 10 and row["send_lag_p99_ms"] < 20 and not row["client_lagging"]
    assert wait_memory_below(gpu.uuid, 4096) < 4096  # the server's process group is gone
