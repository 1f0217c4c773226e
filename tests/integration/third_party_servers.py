"""More third-party OpenAI-compatible servers for the ``engine=endpoint`` tests (issue 28: "any
OpenAI-compatible server, chat or completions"), started on 127.0.0.1 in their own process group
with ``ServerProcess`` (tests/integration/endpoint_servers.py):

- ``litellm_proxy``: the LiteLLM proxy (``pip install 'litellm[proxy]'``), its model either
  mocked (``mock_response``: no network, no database) or relayed to another server of these tests
  (``backend_url``). Its ``/health`` calls every model and needs the key, so readiness is
  ``/health/readiness`` (no key needed).
- ``transformers_serve``: ``transformers serve`` on the CPU, serving a tiny random Llama with the
  project's word-level tokenizer (``t3 t4 ...``), written into ``tmp_path``.

What each one accepts, refuses and sends is recorded under tests/data/streams/ (one stream per
server and API, with a ``.json`` sidecar; the failures as ``<server>_<api>_<what>.json``).
"""
from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

from tests.integration.endpoint_servers import KEY, START_TIMEOUT_S, ServerProcess

BIN = Path(sys.executable).parent  # the venv's console scripts: litellm, transformers

# The ``tiny`` model of conf/model/tiny.yaml, as transformers builds it.
TINY_LLAMA = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
              "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
# The messages' contents joined by spaces, nothing added: a chat prompt of N words is N prompt tokens.
PLAIN_CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% if not loop.last %} {% endif %}{% endfor %}"


def mock_text(words: int) -> str:
    """``words`` words of the tiny vocabulary, each 3 characters with its space (``t3 t4 ... t9 t3``):
    LiteLLM's mock streams its text 3 characters a chunk, so one chunk is one word, one tiny token."""
    return "".join(f"t{3 + i % 7} " for i in range(words))


def litellm_proxy(tmp_path: Path, model: str = "tiny", key: str | None = KEY, backend_url: str | None = None,
                  backend_model: str | None = None, mock_words: int = 12,
                  log: Path | None = None) -> ServerProcess:
    """``litellm --config <tmp_path>/litellm.yaml --host 127.0.0.1 --port N`` serving ``model`` on
    ``/v1/completions`` and ``/v1/chat/completions`` (streamed or not), with the master key ``key``
    (requests need ``Authorization: Bearer <key>``; ``key=None`` starts it without one).

    Without ``backend_url`` the model is mocked (``mock_response``, no upstream call): every request
    gets the same ``mock_words`` words, one 3-character chunk each, all at once, whatever its
    ``max_tokens``; ``usage`` is LiteLLM's own count (tiktoken-like, not the chunk count). With
    ``backend_url`` (the root URL of an OpenAI-compatible server, e.g. ``xpyd_sim(...).url``) it
    relays to ``<backend_url>/v1`` as ``openai/<backend_model or model>`` with the same key: unknown
    request fields are passed on verbatim, but the stream comes back rebuilt by LiteLLM (vLLM's
    ``token_ids``/``prompt_token_ids`` and per-chunk usage dropped, usage only in a final chunk).

    Startup takes about 8 s on 2 cores. ``LITELLM_LOCAL_MODEL_COST_MAP=True`` stops it fetching its
    price list from GitHub (about 7 s of retries offline)."""
    params: dict[str, object] = {"model": f"openai/{backend_model or model}"}
    if backend_url is None:
        params.update(api_key="unused", mock_response=mock_text(mock_words))
    else:
        params.update(api_key=key or "unused", api_base=backend_url.rstrip("/") + "/v1")
    settings: dict[str, object] = {"master_key": key} if key else {"dangerously_permit_weak_or_unset_master_key": True}
    config = {"model_list": [{"model_name": model, "litellm_params": params}], "general_settings": settings}
    path = Path(tmp_path) / "litellm.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    argv = ["env", "LITELLM_LOCAL_MODEL_COST_MAP=True", str(BIN / "litellm"), "--config", str(path),
            "--host", "127.0.0.1", "--port", "{port}", "--num_workers", "1"]
    return ServerProcess(argv, "litellm proxy", log, ready_path="/health/readiness")


def tiny_model_dir(root: Path, model: str = "tiny", chat_template: str | None = PLAIN_CHAT_TEMPLATE) -> Path:
    """``root/model``: a tiny random Llama (seeded, fp32, ~100k parameters) with the project's
    word-level tokenizer (512 tokens, ``tokenizer_files``), and ``chat_template`` in its
    ``tokenizer_config.json`` unless None (then chat requests are a 400 in transformers serve)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from orchestrator.client.model_files import tokenizer_files

    target = Path(root) / model
    target.mkdir(parents=True, exist_ok=True)
    files = tokenizer_files(TINY_LLAMA["vocab_size"])
    if chat_template is not None:
        files["tokenizer_config.json"]["chat_template"] = chat_template
    for name, doc in files.items():
        (target / name).write_text(json.dumps(doc, indent=1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).save_pretrained(target)
    return target


def transformers_serve(tmp_path: Path, model: str = "tiny", chat_template: str | None = PLAIN_CHAT_TEMPLATE,
                       log: Path | None = None) -> ServerProcess:
    """``transformers serve <model> --host 127.0.0.1 --port N --device cpu`` run in ``tmp_path``,
    serving the tiny model written to ``tmp_path/<model>`` (``tiny_model_dir``), so requests name it
    ``model`` (the server is pinned to that name; any other is a 400; no ``model`` is fine).

    Routes: /v1/chat/completions, /v1/completions, /v1/responses, /v1/models, /health (no key; it
    never checks one). Greedy decoding; ``max_tokens`` is ``max_new_tokens`` but the model may end
    earlier on its EOS (there is no ``ignore_eos``: send ``generation_config='{"min_new_tokens": N}'``).
    Its streams end after the finish chunk (and the usage chunk, if asked), with no ``data: [DONE]``;
    a chunk may hold several tokens when the client falls behind. Refused: a token-id ``prompt``
    (400), any field outside the OpenAI schema (422, e.g. vLLM's ``ignore_eos``/``min_tokens``/
    ``return_token_ids``/``request_id``). Startup ~10 s; the fixture then sends one 1-token request so
    the model is loaded before the test's first request."""
    tiny_model_dir(tmp_path, model, chat_template)
    argv = ["env", "-C", str(tmp_path), "HF_HUB_OFFLINE=1", "OMP_NUM_THREADS=1", str(BIN / "transformers"), "serve",
            model, "--host", "127.0.0.1", "--port", "{port}", "--device", "cpu", "--log-level", "warning"]
    server = ServerProcess(argv, "transformers serve", log)
    try:
        warm = json.dumps({"model": model, "prompt": "t3", "max_tokens": 1}).encode()
        req = urllib.request.Request(f"{server.url}/v1/completions", warm, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=START_TIMEOUT_S):
            pass
    except BaseException:
        server.stop()
        raise
    return server
