"""``engine=endpoint`` against REAL servers on 127.0.0.1:

- xpyd-sim (a third-party OpenAI-compatible inference simulator from PyPI, in the ``dev`` extra),
  started by these tests with a configured prefill delay, per-token decode delay and API key. It
  streams one text chunk per token, with usage only in the last chunk and no token ids: the probe
  finds token-id prompts accepted (it counts a list prompt's ids) and per-token times only from
  chunks. Measured TTFT and TPOT must match its configuration within the tolerances below, output
  token counts must be exact, a failed server must give error rows and a status.
- the project's own streaming test server (``tests/integration/test_client.SseServer``: vLLM's
  dialect, token ids in every chunk): token-id mode with per-token times from ids; and a variant
  that rejects token-id prompts ("prompt must be a string"), where the probe picks text prompts.

A server that takes text prompts only (GuideLLM's mock server) and strict servers that refuse
vLLM's extra fields: ``test_endpoint_text_mode``. Servers and cells: ``endpoint_servers``.

The API key never appears in any file a sweep writes, nor in its output.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("xpyd_sim")

from orchestrator.client.probe import ProbeError, probe_sync
from orchestrator.driver.grid import cells
from orchestrator.engines import cell_engine
from orchestrator.engines.endpoint import EndpointEngine, probe_target
from orchestrator.errors import Status
from tests.conftest import free_port, run_orchestrator
from tests.integration.endpoint_servers import KEY, KEY_ENV, OUT_TOKENS, cell_config, files_holding, run_cell, xpyd_sim

PREFILL_MS = 100.0
DECODE_MS = 20.0
# xpyd-sim sleeps one decode step before the first token too: TTFT = prefill + one decode step.
TTFT_MS = PREFILL_MS + DECODE_MS
TTFT_TOL_MS = (-3.0, 30.0)  # HTTP, JSON and event-loop overhead only add (2-core loaded machine)
TPOT_TOL_MS = 4.0  # asyncio.sleep overshoot per token, either side of the configured step


def start_xpyd():
    return xpyd_sim(PREFILL_MS, DECODE_MS)


@pytest.fixture(scope="module")
def xpyd():
    server = start_xpyd()
    yield server
    server.stop()


# ----------------------------------------------------------------------------- the probe


def test_probe_of_the_third_party_server(xpyd, endpoint_key):
    result = probe_sync(probe_target(cell_config(xpyd.url))[0])
    assert (result.prompt_mode, result.token_times, result.reports_usage) == ("token_ids", "chunks", True)
    assert result.served_models == ("tiny",)
    forced = probe_sync(probe_target(cell_config(xpyd.url, "engine.endpoint.prompt=text"))[0])
    assert forced.prompt_mode == "text"


@pytest.mark.parametrize("override, env, message", [
    ("engine.endpoint.model=llama-70b", KEY, "engine.endpoint.model=llama-70b: not served at"),
    ("engine.endpoint.base_url=http://127.0.0.1:{dead}", KEY, "unreachable"),
    ("", "sk-wrong", f"engine.endpoint.api_key_env={KEY_ENV}: the server refused that key (HTTP 401)"),
])
def test_probe_refuses_bad_input_in_one_line(xpyd, monkeypatch, override, env, message):
    monkeypatch.setenv(KEY_ENV, env)
    extra = [override.format(dead=free_port())] if override else []
    with pytest.raises(ProbeError) as exc:
        probe_sync(probe_target(cell_config(xpyd.url, *extra))[0])
    assert message in str(exc.value) and "\n" not in str(exc.value) and KEY not in str(exc.value)


# ----------------------------------------------------------------------------- measuring


def test_ttft_tpot_and_token_counts_against_the_third_party_server(xpyd, endpoint_key):
    engine, wr, row = run_cell(cell_config(xpyd.url))
    ok = [r for r in wr.records if r.status == "ok"]
    assert len(ok) == len(wr.records) > 10
    assert all(r.output_tokens == OUT_TOKENS and r.prompt_tokens_reported == 24 for r in ok)
    assert TTFT_MS + TTFT_TOL_MS[0] <= row["ttft_p50_ms"] <= TTFT_MS + TTFT_TOL_MS[1], row["ttft_p50_ms"]
    assert abs(row["tpot_p50_ms"] - DECODE_MS) <= TPOT_TOL_MS, row["tpot_p50_ms"]
    assert row["itl_basis"] == "chunk" and abs(row["itl_p50_ms"] - DECODE_MS) <= TPOT_TOL_MS
    assert all(len(r.chunk_times_s) == OUT_TOKENS and r.token_times_s is None for r in ok)
    assert not row["token_count_mismatch"] and row["n_requests_failed"] == 0
    extra = wr.extra
    assert (extra["endpoint_prompt_mode"], extra["endpoint_token_times"]) == ("token_ids", "chunks")
    assert extra["endpoint_prompt_tokens_mismatch"] == 0 and wr.failure is None


def test_text_prompts_are_checked_against_the_servers_count(xpyd, endpoint_key):
    """xpyd-sim counts a text prompt as len(text) // 4 tokens, not under the model's tokenizer:
    every request is still measured, and the mismatch is counted."""
    engine, wr, row = run_cell(cell_config(xpyd.url, "engine.endpoint.prompt=text"))
    ok = [r for r in wr.records if r.status == "ok"]
    assert len(ok) == len(wr.records) and all(r.output_tokens == OUT_TOKENS for r in ok)
    assert wr.extra["endpoint_prompt_mode"] == "text"
    assert wr.extra["endpoint_prompt_tokens_mismatch"] == sum(r.prompt_tokens_reported != 24 for r in ok) > 0


def test_a_server_dying_mid_cell_gives_error_rows_and_a_status(endpoint_key):
    server = start_xpyd()
    cfg = cell_config(server.url, "workload.duration_s=3")
    threading.Timer(2.0, server.stop).start()  # one second into the measured window
    engine, wr, row = run_cell(cfg)
    assert wr.failure is not None and wr.failure[0] == Status.engine_error.value
    assert "no longer answers" in wr.failure[1]
    statuses = {r.status for r in wr.records}
    assert "error" in statuses and "ok" in statuses and row["n_requests_failed"] > 0


def test_one_cell_through_the_unit_runner_keeps_rows_and_names_the_modes(xpyd, endpoint_key):
    from orchestrator.core.messages import UnitSpec
    from orchestrator.worker.unit import UnitRunner

    [cell] = cells([cell_config(xpyd.url)], {})
    assert cell.status is None and cell_engine(cell) is EndpointEngine
    unit = UnitSpec(key="k", engine="endpoint", engine_reason="", sweep="t", cells=(cell,), on_gpu=False)
    [res] = list(UnitRunner(unit).results())
    row = res.tables["runs"].to_pylist()[0]
    assert res.status is Status.ok, row["error"]
    assert (row["prompt_mode"], row["token_times_source"], row["itl_basis"]) == ("token_ids", "chunks", "chunk")
    assert row["request_dialect"] == "vllm"  # xpyd-sim takes vLLM's extra fields
    assert row["n_prompt_tokens_mismatch"] == 0 and row["energy_j"] is None
    assert "gpu_uuids" in row["energy_note"] and row["energy_source"] == "none"
    assert KEY not in json.dumps(row, default=str)


def test_a_window_in_which_no_request_completes_is_never_ok(endpoint_key):
    """A server far too slow for the cell (every measured request still streaming at the drain
    limit): the cell ends engine_error with the reason and keeps its cancelled rows — never ``ok``
    with an empty error (issue 27)."""
    from orchestrator.core.messages import UnitSpec
    from orchestrator.worker.unit import UnitRunner

    slow = xpyd_sim(50.0, 300.0)  # 64 tokens take ~19 s; the window is 1 s, the drain 1 s
    try:
        [cell] = cells([cell_config(slow.url, "workload.duration_s=1", "workload.drain_timeout_s=1",
                                    "workload.warmup_requests=0")], {})
        unit = UnitSpec(key="k", engine="endpoint", engine_reason="", sweep="t", cells=(cell,), on_gpu=False)
        [res] = list(UnitRunner(unit).results())
    finally:
        slow.stop()
    row = res.tables["runs"].to_pylist()[0]
    assert res.status is Status.engine_error and row["status"] == "engine_error"
    assert row["error"].startswith("no measured request completed ok: ") and "cancelled at the drain limit" in row["error"]
    assert row["n_requests_ok"] == 0 and row["n_requests_cancelled"] == row["n_requests_measured"] > 0
    assert res.tables["requests"].num_rows == row["n_requests_total"]


# ----------------------------------------------------------------------------- the project's own server


@pytest.fixture
def sse(monkeypatch):
    from tests.integration.test_client import API_KEY, SseServer

    monkeypatch.setenv(KEY_ENV, API_KEY)
    with SseServer() as server:
        yield server


def test_token_id_mode_against_the_projects_streaming_server(sse):
    cfg = cell_config(sse.url, "workload.duration_s=1", "workload.output.mean_tokens=9")
    engine, wr, row = run_cell(cfg)
    assert (engine.result.prompt_mode, engine.result.token_times) == ("token_ids", "token_ids")
    assert row["itl_basis"] == "token" and row["n_requests_failed"] == 0
    for rec in wr.records:
        body = sse.bodies[rec.index]
        assert isinstance(body["prompt"], list) and len(body["prompt"]) == 24 and body["return_token_ids"]
        # each token's time is when its own chunk arrived: after the server wrote it, and before it
        # wrote the next ones (a loose bound: a loaded 2-core machine delays reads by tens of ms)
        lag = rec.token_times_s - np.asarray(sse.written[rec.index])
        assert rec.output_tokens == 9 and np.all(lag >= -1e-3) and np.all(lag < 0.5) and np.median(lag) < 0.05
        assert np.all(np.diff(rec.token_times_s) >= 0)


def test_the_probe_picks_text_prompts_where_token_ids_are_refused(monkeypatch):
    from aiohttp import web

    from tests.integration.test_client import API_KEY, SseServer

    class TextOnly(SseServer):
        """Refuses token-id prompts like many OpenAI-compatible servers; counts a text prompt's
        words (the tiny model's word-level tokenizer) as its tokens."""

        async def completions(self, request):
            body = await request.json()
            if not isinstance(body["prompt"], str):
                return web.json_response({"error": {"message": "prompt must be a string"}}, status=400)
            idx = int(body["request_id"].rsplit("-", 1)[1])
            body["prompt"] = body["prompt"].split()
            self.received[idx], self.bodies[idx] = time.monotonic(), body
            return await self._stream(request, body, idx, "normal", self.received[idx])

    monkeypatch.setenv(KEY_ENV, API_KEY)
    with TextOnly() as server:
        engine, wr, row = run_cell(cell_config(server.url, "workload.duration_s=1", "workload.output.mean_tokens=9"))
    assert engine.result.prompt_mode == "text" and wr.extra["endpoint_prompt_mode"] == "text"
    assert all(r.status == "ok" and r.output_tokens == 9 for r in wr.records)
    assert all(len(server.bodies[r.index]["prompt"]) == 24 for r in wr.records)  # exact under the tokenizer
    assert wr.extra["endpoint_prompt_tokens_mismatch"] == 0


# ----------------------------------------------------------------------------- the command line


def test_a_sweep_over_rates_and_the_key_written_nowhere(xpyd, tmp_path):
    out = tmp_path / "store"
    proc = run_orchestrator(["-m", "engine=endpoint", "model=tiny", f"engine.endpoint.base_url={xpyd.url}",
                             f"engine.endpoint.api_key_env={KEY_ENV}", "workload.arrival=constant",
                             "workload.rate_rps=4,8", "workload.duration_s=2", "workload.warmup_requests=1",
                             f"workload.output.mean_tokens={OUT_TOKENS}", "workload.output.dist=fixed",
                             f"store.dir={out}", "dispatch.num_cpus=2", "dispatch.progress=false"],
                            env={KEY_ENV: KEY}, timeout=240)
    assert "prompts as token ids, token times from chunks (ITL per chunk)" in proc.stdout
    assert "sweep done: 2 ok" in proc.stdout
    from orchestrator.store.sweep_store import load

    runs = load(str(out)).runs.to_pandas()
    assert sorted(runs["offered_rate_rps"]) == [4.0, 8.0] and set(runs["prompt_mode"]) == {"token_ids"}
    assert KEY not in proc.stdout + proc.stderr and not files_holding(out, KEY)


@pytest.mark.parametrize("args, env, line", [
    (["-m", "batch_size=1,8"], {}, "error: batch_size=1,8: engine=endpoint measures a server that schedules"),
    (["engine.endpoint.model=nope"], {KEY_ENV: KEY}, "error: engine.endpoint.model=nope: not served at"),
    ([], {KEY_ENV: "sk-bad"}, f"error: engine.endpoint.api_key_env={KEY_ENV}: the server refused that key"),
])
def test_bad_input_is_one_line_and_exit_2_before_the_sweep(xpyd, tmp_path, args, env, line):
    proc = run_orchestrator(["engine=endpoint", "model=tiny", f"engine.endpoint.base_url={xpyd.url}",
                             f"engine.endpoint.api_key_env={KEY_ENV}", f"store.dir={tmp_path}", *args],
                            env=env, check=False, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), proc.stderr
    assert "started a local Ray cluster" not in proc.stdout and "sk-bad" not in proc.stderr
