"""The vLLM engines' pure parts, without vllm installed: engine arguments and ``vllm serve``
flags from the real config, log classification with vLLM 0.26's own messages, /metrics parsing,
request timing, process-group kill, and the offline engine driven through a fake ``vllm``
module (batches, token counts, window, start-up failure statuses)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from orchestrator import errors
from orchestrator.client import metrics
from orchestrator.client.model_files import prompt_digest
from orchestrator.client.workload import RequestSpec, build_plan
from orchestrator.config.fields import as_plain, from_dict
from orchestrator.config.groups import WorkloadKind
from orchestrator.driver.grid import config_of
from orchestrator.engines import engine_for
from orchestrator.engines.vllm import common as vc
from orchestrator.engines.vllm import log as vl
from orchestrator.engines.vllm import offline as vo
from orchestrator.engines.vllm import server as vs
from orchestrator.errors import CellFailure, Status

VLLM_LOGS = Path(__file__).parent / "data" / "vllm_logs"


def cfg(model="llama2_7b", quant="none", workload="offline", vllm=None, model_over=(), **wl):
    """The real cell config (conf/ defaults, engine=vllm on an H100) with ``workload.<key>`` values
    and ``engine.vllm`` options (a dict, ``extra_args`` included) replaced."""
    c = config_of([f"model={model}", f"quantization={quant}", "gpu=h100", f"workload={workload}", "engine=vllm",
                   "sampler=nvml", "batch_size=8", *(f"workload.{k}={v}" for k, v in wl.items()), *model_over])
    if vllm:
        opts = from_dict(vc.VllmOptions, {**as_plain(c.engine.vllm), **vllm})
        c = dataclasses.replace(c, engine=dataclasses.replace(c.engine, vllm=opts))
    return c


# ------------------------------------------------------------------------------- arguments


def test_engine_args_from_the_real_config():
    a = vc.engine_args(cfg(), 256, "/models/llama2")
    assert a == {
        "model": "/models/llama2", "load_format": "dummy", "max_num_seqs": 256, "enforce_eager": False,
        "enable_chunked_prefill": True, "enable_prefix_caching": False, "scheduling_policy": "fcfs",
        "gpu_memory_utilization": 0.9, "max_model_len": 2048, "dtype": "auto", "seed": 0, "disable_log_stats": False,
        "scheduler_cls": "orchestrator.engines.vllm.step_recorder.RecordingScheduler",
    }
    assert "scheduler_cls" not in vc.engine_args(cfg(vllm={"record_steps": False}), 8, "/m")
    sync = vc.engine_args(cfg(vllm={"extra_args": {"async_scheduling": "false"}}), 8, "/m")
    assert sync["scheduler_cls"].endswith(".RecordingSyncScheduler") and sync["async_scheduling"] is False


def test_prefix_caching_is_off_unless_asked_for():
    """No cell may find another's prompts in vLLM's prefix cache: off by default, on when composed."""
    off = vc.engine_args(cfg(), 8, "/m")
    on = vc.engine_args(cfg(model_over=["engine.vllm.enable_prefix_caching=true"]), 8, "/m")
    assert off["enable_prefix_caching"] is False and on["enable_prefix_caching"] is True
    assert "--no-enable-prefix-caching" in vc.serve_flags(off) and "--enable-prefix-caching" not in vc.serve_flags(off)
    assert "--enable-prefix-caching" in vc.serve_flags(on) and "--no-enable-prefix-caching" not in vc.serve_flags(on)
    cmd = vs.serve_command(cfg(workload="chat_medium"), 8, "/m", 8000, python="python3")
    assert "--no-enable-prefix-caching" in cmd  # what `vllm serve` is really started with


def test_one_engine_name_two_variants_by_workload_kind():
    assert engine_for("vllm", WorkloadKind.offline) is vo.VllmOfflineEngine
    assert engine_for("vllm", WorkloadKind.open_loop) is vs.VllmServerEngine
    assert engine_for("vllm", WorkloadKind.closed_loop) is vs.VllmServerEngine
    for cls in (vo.VllmOfflineEngine, vs.VllmServerEngine):
        assert cls.name == "vllm"
    c = cfg(vllm={"gpu_memory_utilization": 0.8})
    eng = vo.VllmOfflineEngine(c, 8)  # cheap before start(): no vllm, no GPU
    assert eng.options is c.engine.vllm and eng.uses_gpu and eng.stop_report() == {}
    assert c.engine.options("vllm").memory_fraction() == 0.8


def test_engine_args_quantization_batched_tokens_and_extra_args():
    a = vc.engine_args(cfg(quant="awq", vllm={"max_num_batched_tokens": 8192, "enforce_eager": True,
                                              "extra_args": {"kv-cache-dtype": "fp8", "enable_prefix_caching": "false",
                                                             "max_num_partial_prefills": "2"}}), 8, "/m")
    # the generated AWQ directory's config.json declares awq: vLLM picks the method and kernel itself
    assert "quantization" not in a and a["max_num_batched_tokens"] == 8192 and a["enforce_eager"] is True
    assert a["kv_cache_dtype"] == "fp8" and a["enable_prefix_caching"] is False and a["max_num_partial_prefills"] == 2
    assert vc.engine_args(cfg(quant="fp8"), 8, "/m")["quantization"] == "fp8"
    assert "quantization" not in vc.engine_args(cfg(), 8, "/m")


def test_real_weights_load_normally():
    c = cfg(model_over=["model.weights=real"])
    assert vc.engine_args(c, 8, "/m")["load_format"] == "auto"


def test_serve_flags_booleans_and_values():
    flags = vc.serve_flags({"model": "/m", "enforce_eager": False, "enable_chunked_prefill": False,
                            "disable_log_stats": False, "max_num_seqs": 64, "quantization": "awq",
                            "max_num_batched_tokens": None, "compilation_config": {"level": 3}})
    assert flags == ["--no-enforce-eager", "--no-enable-chunked-prefill", "--max-num-seqs", "64",
                     "--quantization", "awq", "--compilation-config", '{"level": 3}']
    assert vc.serve_flags({"disable_log_stats": True, "enforce_eager": True}) == ["--disable-log-stats", "--enforce-eager"]


def test_serve_command_has_every_knob_and_no_api_key():
    c = cfg(workload="chat_medium", vllm={"enable_chunked_prefill": False, "max_num_batched_tokens": 4096,
                                           "scheduling_policy": "priority", "gpu_memory_utilization": 0.8,
                                           "max_model_len": 4096, "dtype": "float16"})
    cmd = vs.serve_command(c, 32, "/models/llama2", 8123, python="python3")
    assert cmd[:6] == ["python3", "-m", "vllm.entrypoints.cli.main", "serve", "/models/llama2", "--host"]
    text = " ".join(cmd)
    for part in ("--host 127.0.0.1", "--port 8123", "--served-model-name llama2_7b", "--max-num-seqs 32",
                 "--load-format dummy", "--no-enforce-eager", "--no-enable-chunked-prefill",
                 "--max-num-batched-tokens 4096", "--scheduling-policy priority", "--gpu-memory-utilization 0.8",
                 "--max-model-len 4096", "--dtype float16", "--seed 0", "--disable-uvicorn-access-log"):
        assert part in text, part
    assert "api-key" not in text and "disable-log-stats" not in text  # the server keeps /metrics


def test_cache_env_keeps_the_compile_cache(tmp_path):
    env = vc.cache_env(cfg(vllm={"compile_cache_dir": str(tmp_path / "cc")}))
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "cc") and (tmp_path / "cc").is_dir()
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
    assert "VLLM_CACHE_ROOT" not in vc.cache_env(cfg(vllm={"compile_cache_dir": ""}))


def test_cache_env_puts_the_kernel_caches_under_the_compile_cache_dir(tmp_path, monkeypatch):
    for name in vc.KERNEL_CACHE_ENV:
        monkeypatch.delenv(name, raising=False)
    env = vc.cache_env(cfg(vllm={"compile_cache_dir": str(tmp_path / "cc")}))
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "cc" / "triton")
    assert env["FLASHINFER_WORKSPACE_BASE"] == str(tmp_path / "cc" / "flashinfer")
    assert env["CUDA_CACHE_PATH"] == str(tmp_path / "cc" / "nv_compute_cache")
    assert env["TORCH_EXTENSIONS_DIR"] == str(tmp_path / "cc" / "torch_extensions")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "mine"))  # the user's own stays theirs
    env = vc.cache_env(cfg(vllm={"compile_cache_dir": str(tmp_path / "cc")}))
    assert "TRITON_CACHE_DIR" not in env and env["CUDA_CACHE_PATH"] == str(tmp_path / "cc" / "nv_compute_cache")
    assert not set(vc.KERNEL_CACHE_ENV) & set(vc.cache_env(cfg(vllm={"compile_cache_dir": ""})))


def test_sampling_and_prompts_are_exact_and_deterministic():
    spec = RequestSpec(5, "measured", 0.0, 128, 64)
    assert vc.sampling_kwargs(spec, True) == {"max_tokens": 64, "min_tokens": 64, "ignore_eos": True,
                                              "temperature": 0.0, "detokenize": False}
    assert vc.sampling_kwargs(spec, False)["min_tokens"] == 0
    plan = build_plan(cfg().workload, 8, prompt_key=11)
    p = plan.prompt_ids(spec, 32000)
    assert len(p) == 128 and p == plan.prompt_ids(spec, 32000) and min(p) >= 3 and max(p) < 32000
    assert p != plan.prompt_ids(RequestSpec(6, "measured", 0.0, 128, 64), 32000)
    assert p != build_plan(cfg().workload, 8, prompt_key=12).prompt_ids(spec, 32000)  # another cell


# ------------------------------------------------------------------------------- logs -> statuses

LOGS = {
    "oom": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB",
    "kv_cache_too_small": ("ValueError: To serve at least one request with the model's max seq len (32768), (16.00 GiB KV "
                           "cache is needed, which is larger than the available KV cache memory (5.21 GiB). Based on the "
                           "available memory, the estimated maximum model length is 10656."),
    "unsupported": ("ValueError: The quantization method fp8 is not supported for the current GPU. Minimum capability: 80. "
                    "Current capability: 75."),
}


@pytest.mark.parametrize("status", sorted(LOGS))
def test_classify_log_finds_the_status_line(status):
    text = "INFO 11-22 starting\nINFO max_model_len=2048 ok\n" + LOGS[status] + "\nERROR Engine core initialization failed"
    assert vl.classify_log(text) == (status, LOGS[status])


@pytest.mark.parametrize("line, status", [
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`", "kv_cache_too_small"),
    ("ValueError: Free memory on device cuda:0 (3.1/79.2 GiB) on startup is less than desired GPU memory utilization (0.9, 71.3 GiB).", "oom"),
    ("ValueError: awq_marlin quantization is currently not supported in cpu.", "unsupported"),
    ("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0.", "unsupported"),
    ("ValueError: Unknown quantization method: foo. Must be one of [...]", "unsupported"),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", None),
])
def test_classify_log_more_messages(line, status):
    found = vl.classify_log(line)
    assert (found[0] if found else None) == status


def test_failure_from_log_known_and_unknown(tmp_path):
    err = vl.failure_from_log("vllm serve exited with code 1", "x\n" + LOGS["oom"], tmp_path / "a.log")
    assert isinstance(err, CellFailure) and err.status is Status.oom and "a.log" in str(err) and "log tail" in str(err)
    assert errors.classify(err) == (Status.oom, False)
    other = vl.failure_from_log("vllm serve exited with code 1", "Segmentation fault", None)
    assert isinstance(other, vl.EngineStartError) and errors.classify(other) == (Status.engine_error, True)


def test_read_tail(tmp_path):
    p = tmp_path / "x.log"
    p.write_bytes(b"a" * 100 + b"END")
    assert vl.read_tail(p, 10) == "a" * 7 + "END" and vl.read_tail(tmp_path / "none.log") == ""


def test_output_to_captures_this_process_and_its_children(tmp_path):
    log = tmp_path / "o.log"
    with vc.output_to(log):
        os.write(1, b"from fd 1\n")
        os.write(2, b"from fd 2\n")
        subprocess.run([sys.executable, "-c", "import sys; print('child out'); sys.stderr.write('child err\\n')"],
                       check=True)
    text = log.read_text()
    assert "from fd 1" in text and "from fd 2" in text and "child out" in text and "child err" in text
    os.write(2, b"restored\n")  # back on the original descriptor, not in the file
    assert "restored" not in log.read_text()


# ------------------------------------------------------------------------------- /metrics

METRICS_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama2_7b"} 12.0
vllm:num_requests_running{engine="1",model_name="llama 2 {7b}"} 3.0
vllm:num_requests_waiting{engine="0",model_name="llama2_7b"} 0.0
vllm:kv_cache_usage_perc{engine="0",model_name="llama2_7b"} 0.25
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="llama2_7b"} 40.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="llama2_7b"} 40.0
process_cpu_seconds_total 12.5 1700000000000
python_gc_objects_collected_total{generation="0"} NaN
garbage line
"""


def test_parse_prometheus_sums_label_sets():
    m = vs.parse_prometheus(METRICS_TEXT)
    assert m[vs.RUNNING] == 15.0 and m[vs.WAITING] == 0.0 and m[vs.KV_USAGE] == 0.25
    assert m["vllm:time_to_first_token_seconds_count"] == 40.0 and m["process_cpu_seconds_total"] == 12.5
    assert math.isnan(m["python_gc_objects_collected_total"])
    assert "garbage" not in m


def test_window_mean_uses_scrapes_inside_the_window_only():
    samples = [(0.5, {vs.RUNNING: 100.0}), (1.0, {vs.RUNNING: 4.0}), (2.0, {vs.RUNNING: 8.0}),
               (3.0, {}), (9.0, {vs.RUNNING: 50.0})]
    assert vs.window_mean(samples, vs.RUNNING, 1.0, 3.0) == 6.0
    assert vs.window_max(samples, vs.RUNNING, 1.0, 3.0) == 8.0
    assert vs.window_mean(samples, vs.RUNNING, 4.0, 5.0) is None


# ------------------------------------------------------------------------------- process group


def test_kill_group_terminates_the_whole_group():
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)
    time.sleep(0.2)
    report = vs.kill_group(proc, grace_s=5)
    assert report["stop_signal"] == "SIGTERM" and proc.returncode is not None
    assert all(state == "Z" for state in vs.group_states(proc.pid))  # orphaned zombies await init only


def test_kill_group_escalates_to_sigkill():
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
    proc.stdout.readline()
    report = vs.kill_group(proc, grace_s=0.5)
    assert report["stop_signal"] == "SIGKILL" and proc.returncode == -signal.SIGKILL


def test_kill_group_of_an_exited_process_sends_nothing():
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    assert vs.kill_group(proc)["stop_signal"] == "none"


def test_die_with_parent_is_a_preexec_fn():
    fn = vs.die_with_parent()
    if fn is not None:
        subprocess.run(["true"], preexec_fn=fn, check=True)


# ------------------------------------------------------------------------------- offline engine, fake vllm


def test_request_times_from_vllm_metrics_or_batch_bounds():
    stats = types.SimpleNamespace(first_token_ts=10.2, last_token_ts=11.5)
    assert vo.request_times(stats, 10.0, 11.6) == (10.2, 11.5)
    first, end = vo.request_times(None, 10.0, 11.6)
    assert math.isnan(first) and end == 11.6
    first, end = vo.request_times(types.SimpleNamespace(first_token_ts=0.0, last_token_ts=0.0), 10.0, 11.6)
    assert math.isnan(first)
    first, end = vo.request_times(types.SimpleNamespace(first_token_ts=500.0, last_token_ts=501.0), 10.0, 11.6)
    assert math.isnan(first) and end == 11.6  # another clock: not trusted


class FakeLLM:
    """Stands in for ``vllm.LLM``: 'generates' exactly max_tokens ids, with engine timestamps."""

    instances = []
    fail_with = None
    drop_metrics = False
    start_log = ""  # what the engine core writes while it starts
    quantization = "absent"  # the frontend's model_config.quantization ("absent": no model_config)

    def __init__(self, **kwargs):
        if FakeLLM.fail_with:
            os.write(2, FakeLLM.fail_with.encode() + b"\n")
            raise RuntimeError("Engine core initialization failed. See root cause above.")
        os.write(1, FakeLLM.start_log.encode())
        self.kwargs = kwargs
        self.calls = []
        FakeLLM.instances.append(self)
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=lambda: None))
        if FakeLLM.quantization != "absent":
            self.llm_engine.model_config = types.SimpleNamespace(quantization=FakeLLM.quantization)

    def generate(self, prompts, params, use_tqdm=True):
        assert use_tqdm is False and len(prompts) == len(params)
        self.calls.append((prompts, params))
        t0 = time.monotonic()
        time.sleep(0.01)
        outs = []
        for p, sp in zip(prompts, params):
            ids = list(range(sp.kw["max_tokens"]))
            m = None if FakeLLM.drop_metrics else types.SimpleNamespace(first_token_ts=t0 + 0.002,
                                                                         last_token_ts=t0 + 0.009)
            outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=ids)], request_id=str(len(outs)),
                                              prompt_token_ids=p["prompt_token_ids"], metrics=m))
        return outs


class FakeSamplingParams:
    def __init__(self, **kw):
        self.kw = kw


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    mod = types.ModuleType("vllm")
    mod.LLM, mod.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setenv(vc.LOG_DIR_ENV, str(tmp_path / "logs"))
    monkeypatch.setenv("ORCHESTRATOR_MODEL_CACHE", str(tmp_path / "models"))
    for key in ("VLLM_CACHE_ROOT", "VLLM_NO_USAGE_STATS", "VLLM_WORKER_MULTIPROC_METHOD", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, "")  # restored (or removed) after the test; start() sets them
        monkeypatch.delenv(key)
    gpu = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", uuid="GPU-1", memory_total_mib=81559.0,
                                driver_version="580.1", cuda_driver_version="13.0")
    monkeypatch.setattr(vc, "check_gpu_types", lambda name, count, env=None: [gpu])
    monkeypatch.setattr(vc, "wait_for_gpu_memory", lambda g, u, timeout_s=0: {"gpu_memory_used_before_start_mib": 500.0})
    FakeLLM.instances, FakeLLM.fail_with, FakeLLM.drop_metrics = [], None, False
    FakeLLM.start_log, FakeLLM.quantization = "", "absent"
    return mod


def test_offline_engine_runs_static_batches_of_exactly_batch_size(fake_vllm, tmp_path):
    c = cfg(vllm={"compile_cache_dir": str(tmp_path / "cc")}, num_batches=3, warmup_batches=1, min_window_s=0)
    eng = vo.VllmOfflineEngine(c, max_batch_size=16)
    eng.start()
    llm = FakeLLM.instances[0]
    assert llm.kwargs["max_num_seqs"] == 16 and llm.kwargs["load_format"] == "dummy"
    assert llm.kwargs["disable_log_stats"] is False and os.environ["VLLM_CACHE_ROOT"] == str(tmp_path / "cc")
    assert os.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert (tmp_path / "models").exists() and "config.json" in os.listdir(llm.kwargs["model"])
    plan = build_plan(c.workload, 8)
    wr = eng.run(plan)
    assert [len(p) for p, _ in llm.calls] == [8, 8, 8, 8]
    prompts, params = llm.calls[1]
    assert all(len(p["prompt_token_ids"]) == 128 for p in prompts)
    assert all(sp.kw == {"max_tokens": 128, "min_tokens": 128, "ignore_eos": True, "temperature": 0.0,
                         "detokenize": False} for sp in params)
    assert len(wr.records) == 32 and all(r.output_tokens == 128 for r in wr.records)
    warm = [r for r in wr.records if r.phase == "warmup"]
    meas = [r for r in wr.records if r.phase == "measured"]
    assert len(warm) == 8 and len(meas) == 24
    assert wr.window_start_s == min(r.send_s for r in meas) and wr.window_start_s > max(r.end_s for r in warm)
    assert wr.window_end_s >= max(r.end_s for r in meas)
    assert all(r.first_token_s - r.arrival_s == pytest.approx(0.002, abs=1e-3) for r in meas)
    assert wr.extra["request_times"] == {"vllm_metrics": 32, "batch_bounds": 0}
    # each record names the prompt it was sent: the digest of the token ids vLLM got
    sent = [p["prompt_token_ids"] for prompts, _ in llm.calls for p in prompts]
    assert [r.prompt_hash for r in wr.records] == [prompt_digest(p) for p in sent]
    assert len({r.prompt_hash for r in wr.records}) == 32
    assert len(wr.batch_bounds_s) == 3 and wr.batch_bounds_s[0][0] == wr.window_start_s
    assert wr.batch_bounds_s[-1][1] == wr.window_end_s
    row = metrics.summarize(wr, None, True)
    assert row["output_tokens_in_window"] == 24 * 128 and not row["token_count_mismatch"]
    assert row["ttft_p50_ms"] == pytest.approx(2.0, abs=1.0)
    assert row["n_batches_measured"] == 3 and 0 <= row["batch_output_tok_s_cv"] < 1
    eng.stop()
    eng.stop()  # idempotent


def test_offline_engine_without_vllm_metrics_falls_back_to_batch_bounds(fake_vllm):
    FakeLLM.drop_metrics = True
    c = cfg(num_batches=1, warmup_batches=0, min_window_s=0)
    eng = vo.VllmOfflineEngine(c, 4)
    eng.start()
    wr = eng.run(build_plan(c.workload, 4))
    assert all(math.isnan(r.first_token_s) for r in wr.records)
    assert all(r.end_s == wr.window_end_s for r in wr.records)
    assert wr.extra["request_times"] == {"vllm_metrics": 0, "batch_bounds": 4}


def test_offline_engine_measures_batches_until_the_window_is_long_enough(fake_vllm):
    """min_window_s: more than num_batches static batches (each about 10 ms here) until the measured
    window reaches it, every batch exactly batch_size; max_batches caps the count."""
    c = cfg(num_batches=2, warmup_batches=1, min_window_s=0.15)
    eng = vo.VllmOfflineEngine(c, 4)
    eng.start()
    wr = eng.run(build_plan(c.workload, 4))
    llm = FakeLLM.instances[0]
    n = len(wr.batch_bounds_s)
    assert n > 2 and len(llm.calls) == n + 1 and all(len(p) == 4 for p, _ in llm.calls)
    assert wr.window_end_s - wr.window_start_s >= 0.15
    assert wr.batch_bounds_s[-2][1] - wr.window_start_s < 0.15  # stopped at the first batch reaching it
    meas = [r for r in wr.records if r.phase == "measured"]
    assert len(meas) == 4 * n and sorted({r.batch_index for r in meas}) == list(range(1, n + 1))
    assert len({r.prompt_hash for r in wr.records}) == len(wr.records)  # batches past the plan: new prompts
    capped = cfg(num_batches=2, warmup_batches=0, min_window_s=60, max_batches=3)
    eng2 = vo.VllmOfflineEngine(capped, 4)
    eng2.start()
    wr2 = eng2.run(build_plan(capped.workload, 4))
    assert len(wr2.batch_bounds_s) == 3 and len(FakeLLM.instances[1].calls) == 3


@pytest.mark.parametrize("status", sorted(LOGS))
def test_offline_start_failure_is_classified_from_the_engine_log(fake_vllm, status):
    FakeLLM.fail_with = "ERROR EngineCore failed\n" + LOGS[status]
    eng = vo.VllmOfflineEngine(cfg(), 8)
    with pytest.raises(CellFailure) as info:
        eng.start()
    assert info.value.status is Status(status) and "Engine core initialization failed" in str(info.value)


def test_offline_unknown_start_failure_is_an_engine_error(fake_vllm):
    FakeLLM.fail_with = "Segmentation fault"
    with pytest.raises(vl.EngineStartError, match="Segmentation fault"):
        vo.VllmOfflineEngine(cfg(), 8).start()


def test_offline_start_failure_leads_with_the_engine_cores_root_cause(fake_vllm):
    FakeLLM.fail_with = (VLLM_LOGS / "offline_int8_missing_module.log").read_text()
    with pytest.raises(vl.EngineStartError) as info:
        vo.VllmOfflineEngine(cfg(), 8).start()
    text = errors.error_text(info.value)
    assert text.splitlines()[0] == "ModuleNotFoundError: No module named 'bitsandbytes'"
    assert text.splitlines()[1].startswith("vllm.LLM failed to start: RuntimeError: Engine core initialization")


@pytest.mark.parametrize("frontend, method", [("absent", "auto_awq"), ("auto_awq", "auto_awq"), (None, "none")])
def test_offline_run_records_what_vllm_ran(fake_vllm, frontend, method):
    FakeLLM.start_log, FakeLLM.quantization = (VLLM_LOGS / "serve_awq_marlin_ok.log").read_text(), frontend
    c = cfg(model="llama2_7b_awq", num_batches=1, warmup_batches=0, min_window_s=0)
    eng = vo.VllmOfflineEngine(c, 4)
    eng.start()
    assert "quantization" not in FakeLLM.instances[0].kwargs  # the checkpoint declares awq: vLLM picks
    wr = eng.run(build_plan(c.workload, 4))
    assert wr.extra["vllm_quantization_method"] == method and wr.extra["vllm_linear_kernel"] == "MarlinLinearKernel"


def test_offline_engine_refuses_online_plans_and_bigger_batches(fake_vllm):
    eng = vo.VllmOfflineEngine(cfg(), 8)
    eng.start()
    with pytest.raises(CellFailure, match="engine vllm runs static batches only") as refused:
        eng.run(build_plan(cfg(workload="chat_medium").workload, 8))
    assert refused.value.status is Status.unsupported
    with pytest.raises(ValueError):
        eng.run(build_plan(cfg().workload, 16))


def test_importing_the_engines_imports_no_heavy_library():
    code = ("import sys, orchestrator.engines.vllm.common, orchestrator.engines.vllm.offline, "
            "orchestrator.engines.vllm.server, orchestrator.client.stream, "
            "orchestrator.energy.nvml; print([m for m in ('vllm', 'torch', 'pynvml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert out.stdout.strip() == "[]"


def test_server_cells_over_chat_and_completions_share_one_server_and_keep_their_api():
    """``engine.vllm.api`` is the client's: two cells that differ only in it are two cells (two
    ids) on one ``vllm serve``; each builds its own requests (chat: one user message of text as
    long in tokens as the token-id prompt, the generated tokenizer's template adding nothing)."""
    from orchestrator.driver.dispatch import make_units
    from orchestrator.driver.grid import cells

    axes = ["engine=vllm", "gpu=h100", "model=tiny", "workload=chat_medium", "batch_size=8"]
    configs = [config_of([*axes, f"engine.vllm.api={api}"]) for api in ("completions", "chat")]
    both = cells(configs, {})
    assert len({c.cell_id for c in both}) == 2
    [unit] = make_units(both, "t", {"H100": True})
    assert len(unit.cells) == 2
    engine = vs.VllmServerEngine(configs[0], 8)
    engine._port, engine._api_key = 1, "k"
    plan = build_plan(configs[1].workload, batch_size=8)
    for cfg, route, field in ((configs[0], "/v1/completions", "prompt"), (configs[1], "/v1/chat/completions", "messages")):
        engine.cell_config = cfg
        client = engine._client(plan)
        spec = plan.requests[0]
        body = json.loads(client.body(spec, plan))
        assert client.endpoint.url.endswith(route) and field in body
        assert body["ignore_eos"] and body["min_tokens"] == body["max_tokens"] == spec.output_tokens
    text = body["messages"][0]["content"]
    assert len(engine._prompts.encode(text)) == spec.input_tokens and engine._prompts.chat_overhead() == 0
