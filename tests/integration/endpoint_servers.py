"""Shared by the ``engine=endpoint`` tests: third-party OpenAI-compatible servers from PyPI started
on 127.0.0.1 in their own process group (``ServerProcess``: xpyd-sim, GuideLLM's mock server), an
endpoint cell's config and one cell run through the engine, and the check that the API key was
written nowhere."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List, Optional, Sequence

from orchestrator.client.metrics import summarize
from orchestrator.workloads import plan_for
from orchestrator.config.groups import WorkloadKind
from orchestrator.driver.grid import cells, config_of
from orchestrator.engines import engine_for
from tests.conftest import free_port

KEY_ENV = "ORCH_TEST_ENDPOINT_KEY"
KEY = "sk-endpoint-test-7f3a9c"  # must never reach a written file
OUT_TOKENS = 12
START_TIMEOUT_S = 90.0


class ServerProcess:
    """``argv`` (with ``{port}`` filled) in its own session on 127.0.0.1, up once ``ready_path``
    (``/health``) answers; ``stop()`` kills its whole process group."""

    def __init__(self, argv: Sequence[str], name: str, log: Optional[Path] = None, ready_path: str = "/health"):
        self.name = name
        self.ready_path = ready_path  # GET it answers 200 once up (a server whose /health needs a key: another)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        out = open(log, "wb") if log else subprocess.DEVNULL
        cmd = [a.format(port=self.port) for a in argv]
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if log:
            out.close()
        self._wait()

    def _wait(self) -> None:
        deadline = time.time() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} did not start")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)


def xpyd_sim(prefill_ms: float, decode_ms: float, key: str = KEY, model: str = "tiny") -> ServerProcess:
    """xpyd-sim: accepts token-id prompts, one text chunk per token, usage in the last chunk."""
    return ServerProcess([sys.executable, "-c", "from xpyd_sim.cli import main; main()", "serve", "--host",
                          "127.0.0.1", "--port", "{port}", "--model", model, "--prefill-delay-ms", str(prefill_ms),
                          "--decode-delay-per-token-ms", str(decode_ms), "--require-api-key", key], "xpyd-sim")


def guidellm_mock(ttft_ms: float, itl_ms: float, model: str = "tiny", log: Optional[Path] = None) -> ServerProcess:
    """GuideLLM's mock server (``guidellm mock-server``): ``prompt`` must be a string (a token-id
    list is HTTP 400), one text chunk per token ``itl_ms`` apart after ``ttft_ms``, usage only in a
    last chunk of its own (when ``stream_options.include_usage``). Its ``--output-tokens`` is set
    far above any ``max_tokens`` here, so every request gets exactly ``max_tokens``."""
    return ServerProcess([sys.executable, "-m", "guidellm", "mock-server", "--host", "127.0.0.1", "--port", "{port}",
                          "--model", model, "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms),
                          "--output-tokens", "100000"], "guidellm mock-server", log)


def cell_config(url: str, *overrides: str, out_tokens: int = OUT_TOKENS):
    """An endpoint cell of the tiny model: constant arrivals, short window, ``out_tokens`` exactly."""
    return config_of(["engine=endpoint", "model=tiny", "sampler=auto", f"engine.endpoint.base_url={url}",
                      f"engine.endpoint.api_key_env={KEY_ENV}", "workload=chat_medium", "workload.arrival=constant",
                      "workload.rate_rps=8", "workload.duration_s=2", "workload.warmup_requests=2",
                      "workload.input.dist=fixed", "workload.input.mean_tokens=24", "workload.output.dist=fixed",
                      f"workload.output.mean_tokens={out_tokens}", "workload.drain_timeout_s=5", *overrides])


def run_cell(cfg):
    """start -> run -> stop of the engine the registry gives, and the cell's summary row."""
    [cell] = cells([cfg], {})
    engine = engine_for("endpoint", WorkloadKind.open_loop)(cfg, cfg.batch_size)
    engine.start()
    try:
        wr = engine.run(plan_for(cfg, cell.cell_id))
    finally:
        engine.stop()
    return engine, wr, summarize(wr, cfg.workload.rate_rps, True)


def files_holding(root: Path, secret: str) -> List[Path]:
    """Every file under ``root`` whose bytes hold ``secret`` (asserted empty by the tests)."""
    written = [p for p in Path(root).rglob("*") if p.is_file()]
    assert written, f"nothing written under {root}"
    return [p for p in written if secret.encode() in p.read_bytes()]
