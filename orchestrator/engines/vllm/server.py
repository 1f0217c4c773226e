"""vLLM server engine: an OpenAI-compatible ``vllm serve`` subprocess driven by the streaming
client.

``start()`` checks the GPU type (``wrong_gpu``), waits until the GPU has the memory vLLM will ask
for, then launches ``python -m vllm.entrypoints.cli.main serve <model_dir>`` in its own session
(process group), bound to 127.0.0.1 on a free port, with a random per-cell API key (passed as
``VLLM_API_KEY`` in its environment, so it never shows in ``ps``; its engine-core process forked
from the API server unless ``engine.vllm.server_core_start=spawn``), ``--max-num-seqs`` = the cell's
batch size and the same engine arguments as the offline engine (``vllm_common.engine_args``:
``--load-format dummy``, the ``engine.vllm`` knobs, ``--quantization``, ``--seed``). Its output
goes to a log file. Where a spare process with that launch's imports done waits on the node
(``spare``: each server, once up, leaves one for the next start; ``engine.vllm.server_spare_idle_s``)
the launch is that process's, claimed with the same arguments and environment. A watchdog polls
``/health``: past ``startup_timeout_s`` the cell ends ``startup_timeout``; if the process exits
first its log tail decides: ``oom``, ``kv_cache_too_small``, ``unsupported``, else an engine
error (``vllm_log``: the line that explains it leads the error). Once healthy, the quantization method and linear kernels its
start-up log names go into the run's extra (``vllm_quantization_method``, ``vllm_linear_kernel``),
and the start's phases (``start_phases``: from the launch to ``/health`` 200).

``run(plan)`` drives the plan with ``client.StreamingClient`` — token-id prompts to
``/v1/completions``, or with ``engine.vllm.api=chat`` one user message of text as long in tokens
(the model's chat template applied) to ``/v1/chat/completions`` — (open loop at the scheduled times,
or closed loop; requests unfinished ``plan.drain_timeout_s`` after the window are cancelled and
the server aborts them) and scrapes ``/metrics`` every ``METRICS_INTERVAL_S`` meanwhile; the mean running
batch is the mean of ``vllm:num_requests_running`` over the scrapes inside the measured window.
A server that died during the run fails the cell with its log's status.

``stop()`` kills the whole process group (``process_group.kill_group``: SIGTERM, then SIGKILL), then
polls NVML until the GPU's used memory is back near its value before the start (within
``MEMORY_TOLERANCE_MIB``, at most ``MEMORY_FREE_TIMEOUT_S``); what it saw is in
``stop_report()`` (and logged). Cells that differ only in their workload (arrival process, rate,
duration, lengths) and repeat share one server (``shared_axes``; ``--max-num-seqs`` is the batch
size, so batch sizes do not): before each cell after the first, ``run`` waits until the server's
``/metrics`` show no request running or waiting (the previous cell's cancelled requests are
aborted), at most ``IDLE_WAIT_S``.
"""
from __future__ import annotations

import asyncio
import atexit
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from orchestrator.client.endpoint import CHAT, COMPLETIONS, Endpoint
from orchestrator.client.metrics import WindowRun
from orchestrator.client.prompts import TextPrompts
from orchestrator.client.stream import StreamingClient
from orchestrator.client.workload import WorkloadPlan
from orchestrator.config.engine_options import Api, CoreStart
from orchestrator.config.groups import WorkloadKind
from orchestrator.core.phases import Phase
from orchestrator.energy.gpuinfo import memory_used_mib
from orchestrator.engines.base import register_engine
from orchestrator.engines.process_group import ServerProcess, die_with_parent, group_states, kill_group  # noqa: F401 (tests)
from orchestrator.engines.vllm.prometheus import (
    KV_USAGE, PREFIX_HITS, PREFIX_QUERIES, RUNNING, WAITING, counter_delta, parse_prometheus, window_max, window_mean,
)
from orchestrator.engines.vllm.step_recorder import STEPS_FILE_ENV, logged_steps, server_request_index
from orchestrator.engines.vllm.common import (
    VllmEngine,
    cache_env,
    engine_args,
    free_port,
    http_ok,
    log,
    model_path,
    new_log_path,
    serve_flags,
    steps_file_for,
)
from orchestrator.engines.vllm.log import failure_from_log, read_tail
from orchestrator.engines.vllm.spare import AdoptedProcess, claim_spare, leave_spare, spare_key
from orchestrator.errors import CellFailure, EngineError, NvmlError, Status

PER_START_KEYS = ("VLLM_API_KEY", STEPS_FILE_ENV)  # a launch's own environment: a spare gets them at its claim

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig

HOST = "127.0.0.1"
HEALTH_POLL_S = 0.5
METRICS_INTERVAL_S = 1.0
MEMORY_FREE_TIMEOUT_S = 60.0
MEMORY_TOLERANCE_MIB = 1024.0
REQUEST_TIMEOUT_S = 600.0
IDLE_WAIT_S = 60.0


# ============================================================================ pure helpers


def serve_command(config: "CellConfig", max_num_seqs: int, model_dir: str, port: int,
                  python: str = sys.executable) -> List[str]:
    """The ``vllm serve`` command line of a cell (the API key travels in the environment)."""
    args = engine_args(config, max_num_seqs, model_dir)
    return [
        python, "-m", "vllm.entrypoints.cli.main", "serve", args["model"],
        "--host", HOST, "--port", str(port),
        "--served-model-name", config.model.name,
        "--disable-uvicorn-access-log",
        "--enable-prompt-tokens-details",  # usage.prompt_tokens_details.cached_tokens per request
        *serve_flags(args),
    ]


# ============================================================================ the engine


@register_engine("vllm")
class VllmServerEngine(VllmEngine):
    """``vllm serve`` + the streaming client (see the module doc)."""

    workload_kinds = frozenset({WorkloadKind.open_loop, WorkloadKind.closed_loop})
    shared_axes = frozenset({"workload", "repeat"})

    @classmethod
    def share_key(cls, identity: Dict) -> Dict:
        """Cells with the same ``--max-num-seqs`` (batch size) and engine options share one
        server whatever their arrival process, rate, duration or API (``engine.vllm.api``: each
        cell's own, ``cell_config``); the workload's seed stays in the key (it is the server's
        ``--seed``)."""
        key = super().share_key(identity)
        key["workload_seed"] = identity["workload"]["seed"]
        # the API is the client's: cells over chat and over completions share one server
        options = {k: v for k, v in key["engine"].get("vllm", {}).items() if k != "api"}
        key["engine"] = {**key["engine"], "vllm": options}
        return key

    def __init__(self, config: "CellConfig", max_batch_size: int):
        super().__init__(config, max_batch_size)
        self._proc: Optional[ServerProcess] = None  # vllm serve: launched, or a claimed spare
        self._spare_key = ""  # which spare could serve this engine's launch (spare.spare_key)
        self._spare_env: Dict[str, str] = {}  # the launch's environment less its per-start keys
        self._port: Optional[int] = None
        self._api_key: Optional[str] = None
        self._stop_report: Dict = {}
        self._runs = 0  # cells run on this server so far
        self._prompts: Optional[TextPrompts] = None  # api=chat: text prompts under the model's tokenizer
        self._steps_file: Optional[Path] = None  # where vLLM's scheduler logs its steps (record_steps)
        self._launched_unix_s: Optional[float] = None  # time.time() at the last launch (start_phases)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self._port}"

    @property
    def api_key(self) -> Optional[str]:
        """This server's key (for another client of the same server, e.g. a benchmark)."""
        return self._api_key

    def auth_headers(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        self._claim_gpu()
        model = str(model_path(self.config))
        self.args = engine_args(self.config, self.max_batch_size, model)  # what every cell's row reports
        self._steps_file = steps_file_for(self.config)
        self._api_key = api_key = secrets.token_urlsafe(24)
        t0 = time.monotonic()
        # a second try only if another process took the free port first, or a claimed spare died
        # during its start (a new process then: a spare is a saving, never a cause of failure)
        for attempt in (1, 2):
            proc = self._launch(model, api_key, spare=attempt == 1)
            try:
                self._wait_healthy(proc, float(self.options.startup_timeout_s), t0)
                break
            except (CellFailure, EngineError) as exc:
                spare_died = isinstance(proc, AdoptedProcess) and proc.poll() is not None
                if attempt == 2 or not (spare_died or "address already in use" in str(exc).lower()):
                    raise
                if spare_died:
                    log.warning("vllm_server: the claimed spare %d exited during its start (%s): launching anew",
                                proc.pid, str(exc).splitlines()[0])
        self._start_info["vllm_start_s"] = time.monotonic() - t0
        self._note_engine_choices(launched_unix_s=self._launched_unix_s, ready_unix_s=time.time(),  # its start-up log
                                  from_spare=isinstance(self._proc, AdoptedProcess))
        if self._spare_key:  # set by a launch where spares serve (a test may stand in for it)
            leave_spare(self._spare_key, sys.executable, self._spare_env, float(self.options.server_spare_idle_s),
                        new_log_path("vllm-spare"))

    def _launch(self, model: str, api_key: str, spare: bool = True) -> ServerProcess:
        """Start ``vllm serve`` on a free port with ``api_key`` (its log: ``self._log_path``): a
        spare's (``spare.claim_spare``) when ``spare`` and one waits with this launch's key, else a
        new process. Spares serve forked engine cores only (``server_core_start=fork``: a spawned
        core re-imports the parent's ``__main__``, which a spare's differs from)."""
        self._port = free_port()
        self._log_path = new_log_path("vllm-serve")
        self._launched_unix_s = time.time()
        cmd = serve_command(self.config, self.max_batch_size, model, self._port)
        env = {**os.environ, **cache_env(self.config, self._steps_file), "VLLM_API_KEY": api_key,
               "PYTHONUNBUFFERED": "1", "VLLM_WORKER_MULTIPROC_METHOD": self.options.server_core_start.value}
        if self.args.get("enable_prefix_caching"):  # POST /reset_prefix_cache between cells (a dev route)
            env["VLLM_SERVER_DEV_MODE"] = "1"
        spares = self.options.server_spare_idle_s > 0 and self.options.server_core_start is CoreStart.fork
        self._spare_env = {k: v for k, v in env.items() if k not in PER_START_KEYS}
        self._spare_key = spare_key(cmd[0], env, PER_START_KEYS) if spares else ""
        log.info("vllm_server: %s\n  log: %s", " ".join(cmd), self._log_path)
        proc: Optional[ServerProcess] = None
        if spares and spare:
            proc = claim_spare(self._spare_key, cmd[3:], env, self._log_path)  # what follows `-m <module>`
        if proc is None:
            with open(self._log_path, "ab") as log_file:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True, preexec_fn=die_with_parent())
        self._proc = proc
        atexit.register(self._kill_quietly)
        return proc

    def _wait_healthy(self, proc: ServerProcess, timeout_s: float, t0: float) -> None:
        """Poll /health until 200; raise the cell's failure if ``proc`` exits or time runs out."""
        while True:
            rc = proc.poll()
            if rc is not None:
                self.stop()  # its children (the engine core) may outlive it: kill the group
                raise failure_from_log(f"vllm serve exited with code {rc} during start-up",
                                       read_tail(self._log_path), self._log_path)
            if http_ok(f"{self.base_url}/health"):
                return
            if time.monotonic() - t0 > timeout_s:
                self.stop()
                raise CellFailure(Status.startup_timeout, f"vllm serve not healthy after {timeout_s:.0f} s "
                                  f"(engine.vllm.startup_timeout_s); log: {self._log_path}\n--- log tail ---\n"
                                  + "\n".join(read_tail(self._log_path).splitlines()[-30:]))
            time.sleep(HEALTH_POLL_S)

    # ------------------------------------------------------------------ run
    def run(self, plan: WorkloadPlan) -> WindowRun:
        if plan.offline:
            raise ValueError("vllm_server runs open/closed-loop plans; offline plans go to vllm_offline")
        prefix = f"orch{self._runs}"  # this cell's request ids: <prefix>-<index>
        client = self._client(plan, prefix)
        chat = client.endpoint.chat
        idle_wait_s = self._wait_idle() if self._runs else 0.0
        cache_reset = self._reset_prefix_cache() if self.args.get("enable_prefix_caching") else None
        self._runs += 1
        self.progress(Phase.warmup)
        cr, samples = asyncio.run(self._drive(client, plan))
        self._raise_if_dead("vllm serve died during the run")
        t0, t1 = cr.window_start_s, cr.window_end_s
        extra = {
            **self._start_info, **cr.extra,
            "max_num_seqs": self.max_batch_size,
            "server_cell": self._runs, "server_idle_wait_s": idle_wait_s,
            "metrics_scrapes_in_window": sum(1 for t, _ in samples if t0 <= t <= t1),
            "prefix_cache_reset": cache_reset,
            # the engine's own prefix-cache counters over the cell (a cross-check of the requests' cached tokens)
            "prefix_cache_hits_tokens": counter_delta(samples, PREFIX_HITS),
            "prefix_cache_queries_tokens": counter_delta(samples, PREFIX_QUERIES),
            "mean_waiting_requests": window_mean(samples, WAITING, t0, t1),
            "max_kv_cache_usage_perc": window_max(samples, KV_USAGE, t0, t1),
            "engine_args": {k: v for k, v in self.args.items() if k != "model"},
            "log_path": str(self._log_path), "api": self.cell_config.engine.vllm.api.value, "token_count_source": "usage",
            "output_lengths_forced": bool(plan.ignore_eos),
            "chat_template_tokens": self._prompts.chat_overhead() if chat and self._prompts is not None else None,
        }
        return WindowRun(cr.records, t0, t1, mean_running_batch=window_mean(samples, RUNNING, t0, t1), extra=extra,
                         drain_timeout_s=plan.drain_timeout_s, drain_s=cr.drain_s,
                         steps=logged_steps(self._steps_file, cr.records, lambda rid: server_request_index(rid, prefix)))

    def _client(self, plan: WorkloadPlan, prefix: str = "orch0") -> StreamingClient:
        """The streaming client of a cell: token-id prompts to ``/v1/completions``, or (``api=chat``)
        one user message of text with the same number of tokens once the model's chat template is
        applied (``client.prompts``), to ``/v1/chat/completions``."""
        vocab = int(self.config.model.vocab_size)
        chat = self.cell_config.engine.vllm.api is Api.chat
        endpoint = Endpoint(self.base_url, self.config.model.name, self._api_key, api=CHAT if chat else COMPLETIONS)
        if not chat:
            return StreamingClient(endpoint, lambda s: plan.prompt_ids(s, vocab), request_timeout_s=REQUEST_TIMEOUT_S,
                                   progress=self.progress, request_id_prefix=prefix)
        if self._prompts is None:
            self._prompts = TextPrompts(model_path(self.config))
        prompts, overhead = self._prompts, self._prompts.chat_overhead()
        return StreamingClient(endpoint, lambda s: plan.prompt_ids(s, vocab)[:max(1, s.input_tokens - overhead)],
                               request_timeout_s=REQUEST_TIMEOUT_S, progress=self.progress, prompt_text=prompts.text,
                               request_id_prefix=prefix)

    def _reset_prefix_cache(self, timeout_s: float = IDLE_WAIT_S) -> bool:
        """Empty the server's prefix cache before a cell (``POST /reset_prefix_cache``, which
        refuses while blocks are held: retried until ``timeout_s``) -> whether it was emptied."""
        t0 = time.monotonic()
        while True:
            try:
                req = urllib.request.Request(f"{self.base_url}/reset_prefix_cache", data=b"", method="POST",
                                             headers=self.auth_headers())
                with urllib.request.urlopen(req, timeout=10.0) as r:
                    body = r.read().decode() or "{}"
                if json.loads(body).get("success", True):
                    return True
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("vllm_server: POST /reset_prefix_cache failed: %s", exc)
            if time.monotonic() - t0 > timeout_s:
                return False
            time.sleep(0.2)

    def _wait_idle(self, timeout_s: float = IDLE_WAIT_S) -> float:
        """Wait until ``/metrics`` shows no request running or waiting (or ``timeout_s``
        passes) -> seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            try:
                req = urllib.request.Request(f"{self.base_url}/metrics", headers=self.auth_headers())
                with urllib.request.urlopen(req, timeout=2.0) as r:
                    m = parse_prometheus(r.read().decode())
                if m.get(RUNNING, 0.0) + m.get(WAITING, 0.0) == 0:
                    break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.2)
        return time.monotonic() - t0

    async def _drive(self, client, plan: WorkloadPlan):
        """The client's run with a /metrics scraper beside it."""
        samples: List[Tuple[float, Dict[str, float]]] = []
        done = asyncio.Event()
        scraper = asyncio.create_task(self._scrape(samples, done))
        try:
            cr = await client.run(plan)
        finally:
            done.set()
            await scraper
        return cr, samples

    async def _scrape(self, samples: List, done: asyncio.Event) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not done.is_set():
                t = time.monotonic()
                try:
                    async with session.get(f"{self.base_url}/metrics", headers=self.auth_headers()) as r:
                        if r.status == 200:
                            samples.append((t, parse_prometheus(await r.text())))
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                try:
                    await asyncio.wait_for(done.wait(), timeout=METRICS_INTERVAL_S)
                except asyncio.TimeoutError:
                    pass

    def _raise_if_dead(self, what: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            rc = self._proc.returncode
            self.stop()  # what is left of its process group goes too
            raise failure_from_log(f"{what} (exit code {rc})", read_tail(self._log_path), self._log_path)

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        report = kill_group(proc)
        report.update(self._confirm_memory_freed())
        self._stop_report = report
        log.info("vllm_server: stopped: %s", json.dumps(report, sort_keys=True))

    def stop_report(self) -> Dict:
        return dict(self._stop_report)

    def _confirm_memory_freed(self) -> Dict:
        """Poll NVML until used memory is within MEMORY_TOLERANCE_MIB of its value before start."""
        before = self._start_info.get("gpu_memory_used_before_start_mib")
        if self._gpu is None or before is None:
            return {"gpu_memory_freed": None}
        t0 = time.monotonic()
        try:
            used = memory_used_mib(self._gpu.uuid)
            while used > before + MEMORY_TOLERANCE_MIB and time.monotonic() - t0 < MEMORY_FREE_TIMEOUT_S:
                time.sleep(0.5)
                used = memory_used_mib(self._gpu.uuid)
        except NvmlError as exc:
            return {"gpu_memory_freed": None, "gpu_memory_error": str(exc)}
        return {"gpu_memory_freed": used <= before + MEMORY_TOLERANCE_MIB, "gpu_memory_used_after_stop_mib": used,
                "gpu_memory_free_wait_s": time.monotonic() - t0}

    def _kill_quietly(self) -> None:
        if self._proc is not None:
            try:
                kill_group(self._proc, grace_s=5.0)
            except Exception:
                pass
