"""Every mistake a new user makes on the command line (issue 27) gets exactly one ``error:`` line
on stderr and exit code 2, before any Ray task or GPU work, and nothing is written. Each case
runs the real command as a subprocess."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_orchestrator

ORCHESTRATOR = [
    '~model',
    'model',
    'batch_size=1,8',
    '+sweep=smoke +sweep=full',
    '-m batch_size=1,8 --cfg job',
    'store.dir=',
    'gpu=v100',
    'model=gpt5',
    'quantization=int4',
    'workload=bursty',
    'engine=tensorrt',
    'sampler=rapl',
    'batch_size=0',
    'batch_size=-3',
    'batch_size=abc',
    '-m batch_size=1,0',
    'workload.rate_rps=0',
    'workload.rate_rps=-1',
    'workload.arrival=bursty',
    'workload.duration_s=0',
    'repeats=0',
    'workload.bogus_key=1',
    'engine.vllm.gpu_memory_utilization=1.5',
    'engine.vllm.max_model_len=0',
    'sampler.interval_s=0',
    'sampler.interval_s=0.5',
    'dispatch.max_retries=-1',
    'dispatch.cell_timeout_s=0',
    'store.claim_ttl_s=0',
    'engine.simulated.memory_efficiency=2',
    'engine=endpoint engine.endpoint.base_url=ftp://x',
    'engine=endpoint engine.endpoint.api_key_env=sk-123',
    'log_level=LOUD',
    'engine.hf.int8_threshold=-1',
    '+sweep=nope',
    '+search=nope',
    'workload.warmup_requests=-1',
    'store.dir=/proc/nope',
    'engine.vllm.bogus=1',
    'model.n_layers=abc',
    '-m gpu=h100,v100',
    'workload.input.dist=zipf',
    'sampler.mismatch_tolerance=0',
    'dispatch.pending_timeout_s=-5',
    '~workload.rate_rps',
    'engine=endpoint',
]
"""``python -m orchestrator`` arguments (split on spaces)."""

REPORT = [
    ("--ttft-p99-slo-ms -5", "--ttft-p99-slo-ms must be > 0"),
    ("--tpot-p99-slo-ms 0", "--tpot-p99-slo-ms must be > 0"),
    ("--jobs 0", "--jobs must be > 0"),
    ("--out /proc/nope", "--out /proc/nope: cannot create or write there"),
    ("--price-per-kwh -1", "--price-per-kwh must be >= 0"),
    ("--requests-per-month 0", "--requests-per-month must be > 0"),
]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("args", ORCHESTRATOR)
def test_a_bad_command_line_is_one_error_line_and_exit_2_with_nothing_written(tmp_path, args):
    argv = args.split()
    if not any(a.startswith("store.dir=") for a in argv):
        argv.append(f"store.dir={tmp_path / 'store'}")
    proc = run_orchestrator(argv, check=False, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    _one_error_line(proc.stderr)
    assert not (tmp_path / "store").exists() and "started a local Ray cluster" not in proc.stdout


def test_there_are_at_least_forty_cases():
    assert len(ORCHESTRATOR) + len(REPORT) + 1 >= 40


@pytest.mark.parametrize("args, line", REPORT)
def test_a_bad_report_option_is_one_error_line_and_exit_2(tmp_path, args, line):
    store = ROOT / "experiments" / "h200_study" / "store"
    proc = subprocess.run([sys.executable, "-m", "orchestrator.report", str(store), *args.split()], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and _one_error_line(proc.stderr).startswith(f"error: {line}")


def test_submit_without_a_cluster_is_one_error_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "orchestrator.submit", "--address", "http://127.0.0.1:9",
                           "--", "+sweep=smoke"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert _one_error_line(proc.stderr).startswith("error: --address http://127.0.0.1:9: no Ray cluster answers there")


# Traffic files and workload sources (issue 29): a bad trace or dataset is read by the driver before
# anything runs, and is one line naming the file, the line and what is wrong. (file name, content or
# None for no file, arguments with {path}, what the line must say)
TRAFFIC = [
    ("missing.jsonl", None, "workload=mooncake_sample workload.trace.path={path}",
     "workload.trace.path={path}: no such file"),
    ("azure.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,374\n",
     "workload=mooncake_sample workload.trace.format=auto workload.trace.path={path}",
     "{path}: no column GeneratedTokens"),
    ("empty.jsonl", "", "workload=mooncake_sample workload.trace.path={path}", "{path}: empty"),
    ("backwards.jsonl",
     ('{"timestamp": 2000, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n'
      '{"timestamp": 1500, "input_length": 10, "output_length": 5, "hash_ids": [1]}\n'),
     "workload=mooncake_sample workload.trace.path={path}", "{path}: line 2: the timestamp goes backwards"),
    ("prompts.jsonl", '{"prompt": "t5 t6"}\n{"text": "t7"}\n',
     "workload=sharegpt_sample workload.dataset.format=auto workload.dataset.path={path}",
     "{path}: line 2: needs 'prompt' (text) or 'messages'"),
    (None, None, "workload=mooncake_sample workload.arrival=closed",
     "workload.arrival=closed: workload.source=trace arrives open-loop"),
    (None, None, "workload=mooncake_sample workload.trace.speedup=2 workload.trace.rate_rps=3",
     "workload.trace.speedup=2.0: set speedup or rate_rps, not both"),
]


@pytest.mark.parametrize("name, content, args, line", TRAFFIC,
                         ids=["trace-missing", "azure-no-GeneratedTokens", "trace-empty", "mooncake-backwards",
                              "jsonl-no-prompt", "trace-closed-loop", "speedup-and-rate"])
def test_a_bad_traffic_file_or_source_is_one_error_line_and_exit_2(tmp_path, name, content, args, line):
    path = tmp_path / "traffic" / (name or "unused")
    path.parent.mkdir()
    if content is not None:
        path.write_text(content)
    argv = [a.format(path=path) for a in args.split()] + [f"store.dir={tmp_path / 'store'}"]
    proc = run_orchestrator(argv, check=False, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _one_error_line(proc.stderr).startswith(f"error: {line.format(path=path)}"), proc.stderr
    assert not (tmp_path / "store").exists() and "started a local Ray cluster" not in proc.stdout
