"""Records one streamed request per server and API (exact body bytes + JSON sidecar), and the
informative failures, into tests/data/streams/. Run from /work/main:
    python tests/data/streams/record_streams.py
"""
import http.client
import json
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from orchestrator.client.endpoint import ROUTES
from tests.integration.endpoint_servers import KEY, guidellm_mock, xpyd_sim
from tests.integration.third_party_servers import litellm_proxy, transformers_serve

OUT = Path(__file__).resolve().parent
OUT.mkdir(parents=True, exist_ok=True)
TEXT = "t5 t6 t7 t8"
VLLM_FIELDS = {"ignore_eos": True, "min_tokens": 5, "return_token_ids": True, "request_id": "rec-1",
               "stream_options": {"include_usage": True, "continuous_usage_stats": True}}


def body_for(api, model, **extra):
    b = {"model": model, "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}}
    if api == "chat":
        b["messages"] = [{"role": "user", "content": TEXT}]
    else:
        b["prompt"] = TEXT
    b.update(extra)
    return {k: v for k, v in b.items() if v is not None}


def send(url, path, body, key):
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    t0 = time.time()
    conn.request("POST", path, json.dumps(body).encode(), headers)
    resp = conn.getresponse()
    raw = resp.read()  # chunked transfer decoded; the bytes of the body as sent
    dt = time.time() - t0
    hdrs = [[k, v] for k, v in resp.getheaders()]
    conn.close()
    assert KEY.encode() not in raw and all(KEY not in v for _, v in hdrs)
    return resp.status, resp.reason, hdrs, raw, dt, headers


def record(server, versions, command, url, api, body, key, what=None, note=None):
    status, reason, hdrs, raw, dt, req_headers = send(url, ROUTES[api], body, key)
    ctype = next((v for k, v in hdrs if k.lower() == "content-type"), None)
    meta = {"server": server, "versions": versions, "command": command, "method": "POST", "path": ROUTES[api],
            "request_headers": {k: ("Bearer <key>" if k == "Authorization" else v) for k, v in req_headers.items()},
            "request": body, "status": status, "reason": reason, "content_type": ctype,
            "response_headers": hdrs, "elapsed_s": round(dt, 3)}
    if note:
        meta["note"] = note
    stem = f"{server}_{api}" + (f"_{what}" if what else "")
    if what is None:
        (OUT / f"{stem}.sse").write_bytes(raw)
        meta["body_file"] = f"{stem}.sse"
        meta["ends_with_done"] = raw.rstrip().endswith(b"data: [DONE]")
    else:
        try:
            meta["body"] = json.loads(raw)
        except ValueError:
            meta["body"] = raw.decode("utf-8", "replace")
    (OUT / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{stem}: {status} {len(raw)} bytes {dt:.2f}s")
    return status, raw


def main():
    tmp = Path(tempfile.mkdtemp(prefix="rec-"))
    v_ll = {"litellm": version("litellm")}
    v_tf = {"transformers": version("transformers"), "torch": version("torch")}
    v_gl = {"guidellm": version("guidellm")}
    v_xp = {"xpyd-sim": version("xpyd-sim")}

    # xpyd-sim, and LiteLLM relaying to it
    xp = xpyd_sim(5, 2)
    try:
        cmd = "python -c 'from xpyd_sim.cli import main; main()' serve --host 127.0.0.1 --port N --model tiny " \
              "--prefill-delay-ms 5 --decode-delay-per-token-ms 2 --require-api-key <key>"
        for api in ("chat", "completions"):
            record("xpyd-sim", v_xp, cmd, xp.url, api, body_for(api, "tiny"), KEY,
                   note="no ignore_eos: its simulated EOS may end the answer before max_tokens")
        record("xpyd-sim", v_xp, cmd, xp.url, "chat", body_for("chat", "tiny"), None, "no-key")
        record("xpyd-sim", v_xp, cmd, xp.url, "completions", body_for("completions", "tiny", **VLLM_FIELDS), KEY,
               "vllm-fields", note="accepted (200); ignore_eos honoured, return_token_ids/continuous_usage_stats "
                                   "ignored; body is the SSE text")
        (tmp / "ll-x").mkdir()
        ll = litellm_proxy(tmp / "ll-x", backend_url=xp.url)
        try:
            cmdl = "litellm --config litellm.yaml --host 127.0.0.1 --port N --num_workers 1 " \
                   "(model tiny = openai/tiny at <xpyd-sim>/v1; env LITELLM_LOCAL_MODEL_COST_MAP=True)"
            vv = {**v_ll, **v_xp}
            for api in ("chat", "completions"):
                record("litellm-xpyd-sim", vv, cmdl, ll.url, api, body_for(api, "tiny"), KEY)
            record("litellm-xpyd-sim", vv, cmdl, ll.url, "completions",
                   body_for("completions", "tiny", **VLLM_FIELDS), KEY, "vllm-fields",
                   note="accepted (200): fields relayed to xpyd-sim verbatim; body is the SSE text")
            record("litellm-xpyd-sim", vv, cmdl, ll.url, "completions",
                   body_for("completions", "tiny", stream_options=None), KEY, "no-include-usage",
                   note="200; without include_usage every chunk of /v1/completions carries usage, all zeros "
                        "(xpyd-sim itself sends none); body is the SSE text")
        finally:
            ll.stop()
    finally:
        xp.stop()

    # LiteLLM with a mocked model
    (tmp / "ll-m").mkdir()
    ll = litellm_proxy(tmp / "ll-m")
    try:
        cmdl = "litellm --config litellm.yaml --host 127.0.0.1 --port N --num_workers 1 " \
               "(model tiny = openai/tiny with mock_response of 12 words; env LITELLM_LOCAL_MODEL_COST_MAP=True)"
        for api in ("chat", "completions"):
            record("litellm-mock", v_ll, cmdl, ll.url, api, body_for(api, "tiny"), KEY)
        record("litellm-mock", v_ll, cmdl, ll.url, "chat", body_for("chat", "tiny"), None, "no-key",
               note="500: the 401 path imports prisma (not installed by litellm[proxy])")
        record("litellm-mock", v_ll, cmdl, ll.url, "chat", body_for("chat", "tiny"), "sk-wrong", "wrong-key",
               note="400 'No connected db.': a key other than the master key is looked up in the (absent) DB")
        record("litellm-mock", v_ll, cmdl, ll.url, "chat", body_for("chat", "other"), KEY, "unknown-model")
        record("litellm-mock", v_ll, cmdl, ll.url, "completions", body_for("completions", "tiny", prompt=[5, 6, 7, 8]),
               KEY, "token-ids", note="accepted (200); body is the SSE text (prompt_tokens 0 in usage)")
        record("litellm-mock", v_ll, cmdl, ll.url, "completions", body_for("completions", "tiny", stream_options=None),
               KEY, "no-include-usage", note="200; without include_usage every chunk of /v1/completions carries "
                                             "usage, all zeros; body is the SSE text")
    finally:
        ll.stop()

    # GuideLLM mock server
    gl = guidellm_mock(5, 2)
    try:
        cmd = "python -m guidellm mock-server --host 127.0.0.1 --port N --model tiny --ttft-ms 5 --itl-ms 2 " \
              "--output-tokens 100000"
        for api in ("chat", "completions"):
            record("guidellm-mock", v_gl, cmd, gl.url, api, body_for(api, "tiny"), KEY)
        record("guidellm-mock", v_gl, cmd, gl.url, "completions", body_for("completions", "tiny", prompt=[5, 6, 7, 8]),
               KEY, "token-ids")
    finally:
        gl.stop()

    # transformers serve (with a chat template, then without)
    (tmp / "ts").mkdir()
    ts = transformers_serve(tmp / "ts")
    try:
        cmd = "transformers serve tiny --host 127.0.0.1 --port N --device cpu --log-level warning " \
              "(cwd holds ./tiny: tiny random Llama + word-level tokenizer + plain chat template; HF_HUB_OFFLINE=1)"
        for api in ("chat", "completions"):
            record("transformers-serve", v_tf, cmd, ts.url, api, body_for(api, "tiny"), None)
        record("transformers-serve", v_tf, cmd, ts.url, "completions",
               body_for("completions", "tiny", prompt=[5, 6, 7, 8]), None, "token-ids")
        for api in ("chat", "completions"):
            record("transformers-serve", v_tf, cmd, ts.url, api, body_for(api, "tiny", **VLLM_FIELDS), None,
                   "vllm-fields")
        record("transformers-serve", v_tf, cmd, ts.url, "chat", body_for("chat", "other"), None, "unknown-model")
    finally:
        ts.stop()
    (tmp / "ts0").mkdir()
    ts = transformers_serve(tmp / "ts0", chat_template=None)
    try:
        cmd = "transformers serve tiny --host 127.0.0.1 --port N --device cpu --log-level warning " \
              "(tokenizer without chat_template)"
        record("transformers-serve", v_tf, cmd, ts.url, "chat", body_for("chat", "tiny"), None, "no-chat-template")
    finally:
        ts.stop()


if __name__ == "__main__":
    main()
