"""How fast can the streaming client send on time? (issue 28: the client's own timing error)

Starts a zero-latency streaming mock of ``/v1/completions`` (aiohttp, its own process: every
response at once, ``--tokens`` output tokens in chunks of 8 token ids, usage, ``[DONE]``), then
drives it with ``orchestrator.client.stream.StreamingClient`` open loop (Poisson) at each rate for
``--duration`` seconds and records every request's send lag (send - scheduled arrival). The
highest rate whose send-lag p99 stays within ``--bound-ms`` is the client's capacity on this
machine. Writes ``results.json`` and ``results.md`` to ``--out``.

    python scripts/bench_client_capacity.py --out experiments/benchmarks/client_capacity

Run it on an idle machine: the client and the mock share its cores (here: 2), as a client and a
remote server's network stack would not.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHUNK = 8


def serve_mock(port: int, tokens: int) -> None:
    from aiohttp import web

    events = []
    for i in range(0, tokens, CHUNK):
        ids = list(range(3 + i, 3 + min(i + CHUNK, tokens)))
        last = i + CHUNK >= tokens
        events.append({"choices": [{"index": 0, "text": " ".join(f"t{x}" for x in ids), "token_ids": ids,
                                    "finish_reason": "length" if last else None}]})
    events.append({"choices": [], "usage": {"prompt_tokens": 64, "completion_tokens": tokens}})
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"

    async def completions(request):
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(body)
        await resp.write_eof()
        return resp

    async def health(request):
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def measure(url: str, rate: float, duration_s: float, tokens: int, seed: int) -> dict:
    from orchestrator.client.endpoint import Endpoint
    from orchestrator.client.model_files import prompt_token_ids
    from orchestrator.client.stream import StreamingClient, run_plan
    from orchestrator.client.workload import build_plan
    from orchestrator.driver.grid import config_of

    cfg = config_of(["workload=chat_medium", f"workload.rate_rps={rate}", f"workload.duration_s={duration_s}",
                     "workload.warmup_requests=0", "workload.input.dist=fixed", "workload.input.mean_tokens=64",
                     "workload.output.dist=fixed", f"workload.output.mean_tokens={tokens}", f"workload.seed={seed}"])
    plan = build_plan(cfg.workload, batch_size=1024)
    client = StreamingClient(Endpoint(url, "mock"), lambda s: prompt_token_ids(s.input_tokens, s.index, 32000))
    t0 = time.monotonic()
    run = run_plan(client, plan)
    wall = time.monotonic() - t0
    lag = np.array([r.send_s - r.arrival_s for r in run.records if np.isfinite(r.send_s)]) * 1e3
    ok = sum(r.status == "ok" for r in run.records)
    sent_in_window = sum(1 for r in run.records if run.window_start_s <= r.send_s <= run.window_end_s)
    return {"rate_rps": rate, "requests": len(run.records), "ok": ok, "wall_s": round(wall, 2),
            "achieved_rps": sent_in_window / (run.window_end_s - run.window_start_s),
            "send_lag_p50_ms": float(np.percentile(lag, 50)), "send_lag_p99_ms": float(np.percentile(lag, 99)),
            "send_lag_max_ms": float(lag.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "benchmarks" / "client_capacity")
    ap.add_argument("--rates", type=float, nargs="+", default=[100, 250, 500, 750, 1000, 1500, 2000])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--bound-ms", type=float, default=5.0)
    ap.add_argument("--serve-mock", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_mock:
        serve_mock(args.serve_mock, args.tokens)
        return
    from tests.conftest import free_port

    port = free_port()
    mock = subprocess.Popen([sys.executable, __file__, "--serve-mock", str(port), "--tokens", str(args.tokens)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        rows = []
        for rate in args.rates:
            row = measure(url, rate, args.duration, args.tokens, seed=0)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        mock.kill()
    within = [r["rate_rps"] for r in rows if r["send_lag_p99_ms"] <= args.bound_ms and r["ok"] == r["requests"]]
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "bound_ms": args.bound_ms, "tokens_per_request": args.tokens, "duration_s": args.duration,
              "capacity_rps": max(within) if within else None, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Streaming client capacity ({os.cpu_count()} CPUs, one client process, mock on the same machine)", "",
             f"Open loop (Poisson), {args.duration:g} s per rate, {args.tokens} output tokens per request in chunks of "
             f"{CHUNK} token ids; bound: send-lag p99 <= {args.bound_ms:g} ms. "
             f"Capacity: **{result['capacity_rps']} req/s**.", "",
             "| offered req/s | requests | ok | achieved req/s | send lag p50 (ms) | p99 (ms) | max (ms) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['rate_rps']:g} | {r['requests']} | {r['ok']} | {r['achieved_rps']:.1f} | {r['send_lag_p50_ms']:.2f} "
              f"| {r['send_lag_p99_ms']:.2f} | {r['send_lag_max_ms']:.1f} |" for r in rows]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
