"""``engine=endpoint`` against servers that are not vLLM (issue 28), both APIs:

- ``transformers serve`` (real, on the CPU, a tiny random Llama saved here): token ids refused
  (400), vLLM's fields refused (422), streams that end after the finish reason with no ``[DONE]``;
  measured over completions and over chat, with the chat template applied to the prompt's length;
- GuideLLM's mock server over chat: the measured TTFT and TPOT against what the mock was told;
- LiteLLM's proxy (whose dependencies cannot share this environment: it pins an older
  huggingface_hub than transformers needs) as its recorded bytes replayed by a small server
  (tests/data/streams/, recorded by ``record_streams.py``): usage in a final chunk whose
  ``choices`` is ``[{"index": 0}]``, ``max_tokens`` ignored;
- a chat-only server (completions is a 404) and a server with neither route.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from orchestrator.client.probe import ProbeError, probe_sync
from orchestrator.engines.endpoint import probe_target
from tests.integration.endpoint_servers import KEY, KEY_ENV, cell_config, guidellm_mock, run_cell
from tests.integration.third_party_servers import transformers_serve

STREAMS = Path(__file__).resolve().parents[1] / "data" / "streams"
TTFT_MS, ITL_MS = 100.0, 20.0
TTFT_TOL_MS = (-3.0, 40.0)  # as tests/integration/test_endpoint_text_mode.py: GuideLLM makes up its text after the wait
TPOT_TOL_MS = 4.0


@pytest.fixture
def endpoint_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


@pytest.fixture(scope="module")
def tserve(tmp_path_factory):
    root = tmp_path_factory.mktemp("tserve")
    server = transformers_serve(root, log=root / "server.log")
    yield server, root / "tiny"
    server.stop()


def _tserve_cell(url: str, model_dir: Path, *overrides: str):
    # its tokenizer (the project's, with a plain chat template) measures the prompts; 4 req/s on 2 cores
    return cell_config(url, f"engine.endpoint.tokenizer={model_dir}", "workload.rate_rps=4", "workload.duration_s=2",
                       "workload.output.mean_tokens=6", *overrides)


def test_transformers_serve_over_completions_text_and_openai_fields_only(tserve, endpoint_key):
    server, model_dir = tserve
    engine, wr, row = run_cell(_tserve_cell(server.url, model_dir))
    r = engine.result
    assert (r.api, r.prompt_mode, r.request_dialect, r.token_count_source) == ("completions", "text", "openai", "usage")
    assert any("refused vLLM's fields" in n and "HTTP 422" in n for n in r.notes), r.notes
    assert wr.extra["output_lengths_forced"] is False and wr.extra["api"] == "completions"
    ok = [x for x in wr.records if x.status == "ok"]
    assert len(ok) == len(wr.records) >= 8  # no [DONE]: the finish reason and the stream's end complete each
    assert all(1 <= x.output_tokens <= 6 for x in ok)  # max_tokens bounds them; the model may stop at its EOS
    assert row["n_requests_failed"] == 0 and row["output_throughput_tok_s"] > 0


def test_transformers_serve_over_chat_keeps_the_prompt_length(tserve, endpoint_key):
    server, model_dir = tserve
    engine, wr, row = run_cell(_tserve_cell(server.url, model_dir, "engine.endpoint.api=chat"))
    r = engine.result
    assert (r.api, r.prompt_mode, r.request_dialect) == ("chat", "text", "openai")
    assert wr.extra["chat_template_tokens"] == 0  # the plain template adds nothing around one message
    ok = [x for x in wr.records if x.status == "ok"]
    assert len(ok) == len(wr.records) >= 8 and all(1 <= x.output_tokens <= 6 for x in ok)
    # the server's own prompt count: the 24 tokens the workload asked for, as the tokenizer counts them
    assert {x.prompt_tokens_reported for x in ok} <= {24, 25} and wr.extra["endpoint_prompt_tokens_mismatch"] == 0


@pytest.fixture(scope="module")
def guidellm(tmp_path_factory):
    server = guidellm_mock(TTFT_MS, ITL_MS, log=tmp_path_factory.mktemp("guidellm") / "server.log")
    yield server
    server.stop()


def test_a_chat_cell_measures_the_mocks_ttft_and_itl(guidellm, endpoint_key):
    engine, wr, row = run_cell(cell_config(guidellm.url, "engine.endpoint.api=chat", "workload.rate_rps=4"))
    assert engine.result.api == "chat" and engine.result.token_count_source == "usage"
    ok = [x for x in wr.records if x.status == "ok"]
    assert len(ok) == len(wr.records) and all(x.output_tokens == 12 for x in ok)
    assert TTFT_MS + TTFT_TOL_MS[0] <= row["ttft_p50_ms"] <= TTFT_MS + TTFT_TOL_MS[1], row["ttft_p50_ms"]
    assert abs(row["tpot_p50_ms"] - ITL_MS) <= TPOT_TOL_MS, row["tpot_p50_ms"]
    assert row["itl_basis"] == "chunk" and not row["client_lagging"]


class Replay:
    """Serves recorded response bodies: POST to a route in ``routes`` answers that route's recorded
    bytes (whatever the request; an int: that HTTP status with an error body), every other route
    a 404 like a server without it."""

    def __init__(self, routes: dict[str, str | int]):
        self.routes = {path: name if isinstance(name, int) else (STREAMS / name).read_bytes()
                       for path, name in routes.items()}
        self.bodies: list[dict] = []

    async def answer(self, request: web.Request):
        self.bodies.append(await request.json())
        recorded = self.routes.get(request.path)
        if recorded is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        if isinstance(recorded, int):
            return web.json_response({"error": {"message": "engine overloaded"}}, status=recorded)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        for event in recorded.split(b"\n\n"):
            if event.strip():
                await resp.write(event + b"\n\n")
        return resp

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.answer)
        return app


@pytest.fixture
def replay():
    servers = []

    def start(routes: dict[str, str]) -> str:
        server = ReplayServer(Replay(routes))
        servers.append(server)
        return server.url

    yield start
    for s in servers:
        s.stop()


class ReplayServer:
    """A ``Replay`` on 127.0.0.1 in a thread (aiohttp's runner)."""

    def __init__(self, replay: Replay):
        import asyncio
        import threading

        from tests.conftest import free_port

        self.replay, self.port = replay, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.runner = web.AppRunner(replay.app())
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_litellms_recorded_stream_is_counted_from_its_final_usage(replay, endpoint_key):
    """LiteLLM's mock answers 25 tokens (its usage) whatever max_tokens says: every request is ok
    with the server's count, and the cell says the lengths were not what was asked (T)."""
    url = replay({"/v1/completions": "litellm-mock_completions.sse", "/v1/chat/completions": "litellm-mock_chat.sse"})
    for api in ("completions", "chat"):
        engine, wr, row = run_cell(cell_config(url, f"engine.endpoint.api={api}"))
        assert engine.result.api == api and engine.result.token_count_source == "usage"
        assert all(x.status == "ok" and x.output_tokens == 25 and not x.error for x in wr.records), api
        assert row["token_count_mismatch"] and row["output_tokens_per_request_mean"] == 25


def test_a_chat_only_server_is_measured_over_chat_and_a_server_without_either_route_is_named(replay, endpoint_key):
    chat_only = replay({"/v1/chat/completions": "transformers-serve_chat.sse"})
    engine, wr, row = run_cell(cell_config(chat_only))
    assert engine.result.api == "chat" and "no /v1/completions (HTTP 404)" in engine.result.notes
    assert all(x.status == "ok" for x in wr.records)  # no [DONE] in this recording: the finish reason ends it
    neither = replay({})
    with pytest.raises(ProbeError) as exc:
        probe_sync(probe_target(cell_config(neither))[0])
    assert str(exc.value) == (f"engine.endpoint.base_url={neither}: the server has no /v1/completions (HTTP 404) "
                              "and no /v1/chat/completions (HTTP 404) route")
    forced = replay({"/v1/completions": "xpyd-sim_completions.sse"})
    with pytest.raises(ProbeError, match=r"the server has no /v1/chat/completions \(HTTP 404\) route"):
        probe_sync(probe_target(cell_config(forced, "engine.endpoint.api=chat"))[0])
    # a completions route that fails is that route's failure: auto never measures chat instead
    failing = replay({"/v1/completions": 500, "/v1/chat/completions": "transformers-serve_chat.sse"})
    with pytest.raises(ProbeError) as exc:
        probe_sync(probe_target(cell_config(failing))[0])
    assert "the probe request to /v1/completions failed: HTTP 500" in str(exc.value) and "engine overloaded" in str(exc.value)


def test_recorded_streams_parse_as_their_server_sent_them():
    """Every recording: complete (``[DONE]`` or a finish reason), and counted from its usage."""
    from orchestrator.client.sse import SseStream
    from orchestrator.client.workload import RequestSpec

    spec = RequestSpec(index=0, phase="measured", arrival_s=0.0, input_tokens=4, output_tokens=5)
    for sse in sorted(STREAMS.glob("*.sse")):
        meta = json.loads(sse.with_suffix(".json").read_text())
        st = SseStream(keep_text=True)
        for t, event in enumerate(sse.read_bytes().split(b"\n\n")):
            line = event.strip()
            if line.startswith(b"data:") and not st.feed(line[5:].strip().decode(), float(t)):
                break
        rec = st.record(spec, 0.0, 0.0, 1e3, count_text=lambda text: len(text.split()))
        assert st.done == meta["ends_with_done"] and st.complete, sse.name
        assert rec.status == "ok" and rec.count_source == "usage" and rec.output_tokens >= 1, sse.name
        assert np.isfinite(rec.first_token_s), sse.name
