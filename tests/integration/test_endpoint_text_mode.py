"""``engine=endpoint`` against servers that take text prompts only, or OpenAI's fields only:

- GuideLLM's mock server (``guidellm mock-server``, from PyPI, in the ``dev`` extra; a peer load
  generator's own test server), started here on 127.0.0.1 with a configured time to first token
  and inter-token latency. Its ``prompt`` must be a string (a token-id list is HTTP 400 "Input
  should be a valid string"), it streams one text chunk per token with no token ids, and usage
  only in a last chunk of its own; it has no API key (a key is sent anyway and must be written
  nowhere). The probe must choose text prompts and per-chunk token times; a real sweep over two
  rates must measure TTFT and TPOT within the tolerances below of its configuration, with exact
  output token counts from usage.
- strict servers (the project's ``SseServer``, refusing any field OpenAI's API does not define,
  HTTP 400 "Unrecognized request argument supplied: ..."), taking token ids or text only: the
  probe drops vLLM's extra fields and the cell's row says ``request_dialect='openai'``.
- a server that reports no token count at all is refused by the probe (no output count could
  be known); a request without one is an error row (``test_client``).
"""
from __future__ import annotations

import dataclasses

import itertools
import time

import pytest

pytest.importorskip("aiohttp")
from aiohttp import web

from orchestrator.client.probe import ProbeError, probe_sync
from orchestrator.engines.endpoint import probe_target
from orchestrator.store.sweep_store import load
from tests.conftest import run_orchestrator
from tests.integration.endpoint_servers import (
    KEY,
    KEY_ENV,
    OUT_TOKENS,
    cell_config,
    files_holding,
    guidellm_mock,
    run_cell,
)
from tests.integration.test_client import API_KEY, SseServer

TTFT_MS = 100.0
ITL_MS = 20.0
# GuideLLM sleeps TTFT_MS, then makes up the answer's text (Faker, a few ms) before the first
# chunk: HTTP, JSON, that text and the event loops only add.
TTFT_TOL_MS = (-3.0, 40.0)
TPOT_TOL_MS = 4.0  # asyncio.sleep overshoot per token, either side of ITL_MS
TEXT_RATES = (4.0, 8.0)


@pytest.fixture(scope="module")
def guidellm(tmp_path_factory):
    pytest.importorskip("guidellm")
    server = guidellm_mock(TTFT_MS, ITL_MS, log=tmp_path_factory.mktemp("guidellm") / "server.log")
    yield server
    server.stop()


# ----------------------------------------------------------------------------- GuideLLM's mock server


def test_the_probe_chooses_text_prompts_where_the_server_wants_a_string(guidellm, endpoint_key):
    result = probe_sync(probe_target(cell_config(guidellm.url))[0])
    assert (result.prompt_mode, result.token_times, result.reports_usage) == ("text", "chunks", True)
    assert result.request_dialect == "vllm" and result.served_models == ("tiny",)  # it ignores unknown fields
    with pytest.raises(ProbeError) as exc:  # token ids forced: its own refusal, in one line
        probe_sync(probe_target(cell_config(guidellm.url, "engine.endpoint.prompt=token_ids"))[0])
    message = str(exc.value)
    assert "HTTP 400" in message and "valid string" in message and "\n" not in message and KEY not in message


def test_a_sweep_over_rates_in_text_mode_measures_the_configured_latency(guidellm, tmp_path):
    out = tmp_path / "store"
    rates = ",".join(str(r) for r in TEXT_RATES)
    proc = run_orchestrator(["-m", "engine=endpoint", "model=tiny", f"engine.endpoint.base_url={guidellm.url}",
                             f"engine.endpoint.api_key_env={KEY_ENV}", "workload.arrival=constant",
                             f"workload.rate_rps={rates}", "workload.duration_s=2", "workload.warmup_requests=1",
                             "workload.input.dist=fixed", "workload.input.mean_tokens=24",
                             f"workload.output.mean_tokens={OUT_TOKENS}", "workload.output.dist=fixed",
                             f"store.dir={out}", "dispatch.num_cpus=2", "dispatch.progress=false"],
                            env={KEY_ENV: KEY}, timeout=300)
    assert "prompts as text, token times from chunks (ITL per chunk)" in proc.stdout
    assert "sweep done: 2 ok" in proc.stdout, proc.stdout[-2000:]
    data = load(str(out))
    runs, reqs = data.runs.to_pandas(), data.requests.to_pandas()
    assert sorted(runs["offered_rate_rps"]) == list(TEXT_RATES)
    for _, row in runs.iterrows():
        assert (row["prompt_mode"], row["token_times_source"], row["itl_basis"]) == ("text", "chunks", "chunk")
        assert row["request_dialect"] == "vllm" and row["status"] == "ok" and row["n_requests_failed"] == 0
        assert TTFT_MS + TTFT_TOL_MS[0] <= row["ttft_p50_ms"] <= TTFT_MS + TTFT_TOL_MS[1], row["ttft_p50_ms"]
        assert abs(row["tpot_p50_ms"] - ITL_MS) <= TPOT_TOL_MS, row["tpot_p50_ms"]
        assert abs(row["itl_p50_ms"] - ITL_MS) <= TPOT_TOL_MS, row["itl_p50_ms"]
        assert not row["token_count_mismatch"]
        # GuideLLM counts a prompt's words and spaces (its own mock tokenizer), not the tiny model's
        # tokens: every request's usage.prompt_tokens (warm-up included) differs from the 24 sent.
        assert row["n_prompt_tokens_mismatch"] == (reqs["cell_id"] == row["cell_id"]).sum() > row["n_requests_ok"] > 0
    assert set(reqs["status"]) == {"ok"} and set(reqs["output_tokens"]) == {OUT_TOKENS}
    assert set(reqs["n_token_times"]) == {0}  # no per-token times: its chunks name no ids (ITL per chunk)
    assert KEY not in proc.stdout + proc.stderr and not files_holding(out, KEY)


# ----------------------------------------------------------------------------- strict servers


OPENAI_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop",
                 "logprobs", "echo", "presence_penalty", "frequency_penalty", "best_of", "logit_bias", "seed",
                 "suffix", "user"}


class Strict(SseServer):
    """Refuses any field OpenAI's completions API does not define, as OpenAI does (HTTP 400); with
    ``text_only``, token-id prompts too. Chunks carry several tokens each, no ids; usage at the end.
    Requests are numbered as they come (no ``request_id`` to read)."""

    def __init__(self, text_only: bool):
        super().__init__()
        self.text_only = text_only
        self.numbers = itertools.count()
        self.refused = []

    @staticmethod
    def _unknown(body) -> list:
        options = body.get("stream_options") or {}
        extra_options = [f"stream_options.{k}" for k in sorted(options) if k != "include_usage"]
        return sorted(set(body) - OPENAI_FIELDS) + extra_options

    async def completions(self, request):
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return web.json_response({"error": {"message": "Unauthorized"}}, status=401)
        body = await request.json()
        unknown = self._unknown(body)
        if unknown or (self.text_only and not isinstance(body["prompt"], str)):
            self.refused.append(unknown or ["prompt"])
            why = f"Unrecognized request argument supplied: {unknown[0]}" if unknown else "prompt must be a string"
            return web.json_response({"error": {"message": why, "type": "invalid_request_error"}}, status=400)
        if isinstance(body["prompt"], str):
            body["prompt"] = body["prompt"].split()  # the tiny model's word-level tokens
        idx = next(self.numbers)
        self.received[idx], self.bodies[idx] = time.monotonic(), body
        return await self._stream(request, body, idx, "no_ids", self.received[idx])


@pytest.mark.parametrize("text_only, mode", [(False, "token_ids"), (True, "text")])
def test_a_strict_server_gets_the_openai_fields_only(monkeypatch, text_only, mode):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    with Strict(text_only) as server:
        engine, wr, row = run_cell(cell_config(server.url, "workload.duration_s=1", out_tokens=9))
    assert (engine.result.prompt_mode, engine.result.request_dialect) == (mode, "openai")
    assert "OpenAI fields only" in engine.result.describe()
    assert wr.extra["endpoint_request_dialect"] == "openai" and wr.extra["endpoint_prompt_mode"] == mode
    assert any("return_token_ids" in r for r in server.refused)  # the first probe request, with the extras
    assert all(r.status == "ok" and r.output_tokens == 9 for r in wr.records) and len(wr.records) > 5
    assert row["itl_basis"] == "chunk" and wr.extra["endpoint_prompt_tokens_mismatch"] == 0
    bodies = list(server.bodies.values())  # the probe's accepted request, then the cell's
    assert not [b for b in bodies if Strict._unknown(b)]
    assert [len(b["prompt"]) for b in bodies[1:]] == [24] * len(wr.records)


def test_a_server_that_reports_no_token_count_is_counted_by_its_text_or_refused(monkeypatch):
    """No usage, no token ids: the streamed text is counted under the model's tokenizer
    (``tokenized``); without a tokenizer to count with, no request's output tokens could be known."""
    monkeypatch.setenv(KEY_ENV, API_KEY)
    with SseServer() as server:
        server.behaviour[0] = "nothing"  # the probe's request ("probe-0")
        target = probe_target(cell_config(server.url))[0]
        result = probe_sync(target)
        assert (result.token_count_source, result.token_times, result.reports_usage) == ("tokenized", "chunks", False)
        assert "output tokens counted from tokenized" in result.describe()
        server.behaviour[0] = "nothing"
        with pytest.raises(ProbeError, match="reports no token counts .* no tokenizer to count its text"):
            probe_sync(dataclasses.replace(target, count_text=None))


def test_the_base_install_measures_a_token_id_server_and_names_the_extra_a_text_server_needs(monkeypatch, guidellm):
    """Without transformers (the base install): a server that takes token ids and reports usage
    needs no tokenizer; one that takes text only gets one line naming the extra to install."""
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    monkeypatch.setenv(KEY_ENV, API_KEY)  # the test server's key (GuideLLM's mock checks none)
    with SseServer() as server:
        result = probe_sync(probe_target(cell_config(server.url))[0])
        assert (result.prompt_mode, result.token_count_source) == ("token_ids", "usage")
    with pytest.raises(ProbeError) as exc:
        probe_sync(probe_target(cell_config(guidellm.url))[0])
    message = str(exc.value)
    assert "needs transformers: pip install -e '.[hf]'" in message and "\n" not in message, message
