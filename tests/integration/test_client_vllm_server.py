"""VllmServerEngine end to end on a CPU, against a fake ``vllm serve``: a real subprocess started
by the engine's own command line (a stand-in ``vllm.entrypoints.cli.main`` on PYTHONPATH) that
serves ``/health``, ``/metrics`` and streamed ``/v1/completions`` on 127.0.0.1 with the
engine's API key, and spawns a child in its process group. Checks: the command line and key
handling, the /health watchdog (start-up timeout, exit classified from the log), the run
(records, window, mean running batch from /metrics), a server dying mid-run, the whole process
group killed at stop, the GPU-memory confirmation, and one cell through ``worker.UnitRunner``.
The engine is the one the registry gives for ``engine=vllm`` and an open-loop workload."""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import textwrap
import types
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

from orchestrator.client import metrics
from orchestrator.client.model_files import prompt_digest
from orchestrator.client.workload import build_plan
from orchestrator.config.groups import WorkloadKind
from orchestrator.driver.grid import config_of
from orchestrator.engines import cell_engine, engine_for
from orchestrator.engines.vllm import common as vllm_common
from orchestrator.engines.vllm import server as vs
from orchestrator.engines.vllm.spare import SPARE_DIR_ENV
from orchestrator.errors import CellFailure, Status

ServerEngine = engine_for("vllm", WorkloadKind.open_loop)

FAKE_MAIN = textwrap.dedent('''
    """A fake `vllm serve` for tests: FAKE_VLLM_MODE = ok | oom | hang | die_later | ignore_term
    (SIGTERM ignored) | die_in_spare (exits at once when a spare runs it, not the test's launch)."""
    import asyncio, json, os, signal, subprocess, sys, time
    from aiohttp import web

    IMPORTED_UNIX_S = time.time()  # a spare imports this module long before its main()

    def main():
        argv = sys.argv[1:]
        state = os.environ["FAKE_VLLM_STATE"]
        mode = os.environ.get("FAKE_VLLM_MODE", "ok")
        if mode == "die_in_spare" and os.getppid() != int(os.environ["FAKE_TEST_PID"]):
            print("fake vllm serve: dying in a spare", file=sys.stderr, flush=True)
            sys.exit(3)
        if mode == "ignore_term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(os.path.join(state, "argv.json"), "w") as f:
            json.dump({"argv": argv, "api_key": os.environ.get("VLLM_API_KEY"),
                       "cache": os.environ.get("VLLM_CACHE_ROOT"),
                       "core_start": os.environ.get("VLLM_WORKER_MULTIPROC_METHOD"), "pid": os.getpid(),
                       "imported_unix_s": IMPORTED_UNIX_S,
                       "package_modules": sorted(m for m in sys.modules if m.split(".")[0] in ("orchestrator", "pyarrow"))},
                      f)
        child = subprocess.Popen(["sleep", "300"])  # an "engine core" in the same process group
        with open(os.path.join(state, "child.pid.part"), "w") as f:
            f.write(str(child.pid))
        os.replace(os.path.join(state, "child.pid.part"), os.path.join(state, "child.pid"))
        print("INFO starting fake vllm serve, max_model_len=2048", flush=True)
        if mode == "oom":
            print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr, flush=True)
            sys.exit(1)
        if mode == "hang":
            time.sleep(300)
        port = int(argv[argv.index("--port") + 1])
        name = argv[argv.index("--served-model-name") + 1]
        key = os.environ["VLLM_API_KEY"]
        running = {"n": 0, "served": 0}

        async def health(request):
            return web.Response(text="")

        async def metrics(request):
            return web.Response(text=f'vllm:num_requests_running{{engine="0",model_name="{name}"}} {running["n"]}.0\\n'
                                     f'vllm:num_requests_waiting{{engine="0",model_name="{name}"}} 0.0\\n')

        async def completions(request):
            if request.headers.get("Authorization") != f"Bearer {key}":
                return web.json_response({"error": "Unauthorized"}, status=401)
            body = await request.json()
            assert body["model"] == name, body["model"]
            running["served"] += 1
            if mode == "die_later" and running["served"] > 3:
                print("torch.OutOfMemoryError: CUDA out of memory (during decode)", file=sys.stderr, flush=True)
                os._exit(1)
            running["n"] += 1
            try:  # a client that closes its stream aborts the request, as in vLLM
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                for i in range(body["max_tokens"]):
                    await asyncio.sleep(0.005)
                    chunk = {"choices": [{"index": 0, "text": f" t{i}", "token_ids": [i + 3], "finish_reason": None}]}
                    await resp.write(f"data: {json.dumps(chunk)}\\n\\n".encode())
                usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": body["max_tokens"]}
                await resp.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\\n\\n".encode())
                await resp.write(b"data: [DONE]\\n\\n")
            finally:
                running["n"] -= 1
            return resp

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/metrics", metrics)
        app.router.add_post("/v1/completions", completions)
        time.sleep(0.5)  # "loading the model"
        web.run_app(app, host=argv[argv.index("--host") + 1], port=port, print=None)

    if __name__ == "__main__":
        main()
''')


def cfg(*overrides):
    """A server cell of llama2_7b on an H100 (chat_medium, shortened; 16 fixed output tokens);
    ``overrides`` (``key=value``) come last."""
    return config_of(["model=llama2_7b", "quantization=none", "gpu=h100", "workload=chat_medium", "engine=vllm",
                      "sampler=none", "batch_size=32", "workload.duration_s=1.5", "workload.warmup_requests=4",
                      "workload.rate_rps=20.0", "workload.output.dist=fixed", "workload.output.mean_tokens=16",
                      "workload.output.std_tokens=0.0", "workload.output.min_tokens=1",
                      "workload.output.max_tokens=64", *overrides])


def test_the_registry_gives_the_server_engine_for_open_and_closed_loop():
    assert ServerEngine is vs.VllmServerEngine
    assert engine_for("vllm", WorkloadKind.closed_loop) is vs.VllmServerEngine
    assert engine_for("vllm", WorkloadKind.offline) is not vs.VllmServerEngine


@pytest.fixture
def fake(monkeypatch, tmp_path):
    pkg = tmp_path / "site" / "vllm" / "entrypoints" / "cli"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "site" / "vllm", tmp_path / "site" / "vllm" / "entrypoints", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "main.py").write_text(FAKE_MAIN)
    state = tmp_path / "state"
    state.mkdir()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "site"), root]))
    monkeypatch.setenv("FAKE_VLLM_STATE", str(state))
    monkeypatch.setenv("ORCHESTRATOR_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("ORCHESTRATOR_MODEL_CACHE", str(tmp_path / "models"))
    gpu = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", uuid="GPU-1", memory_total_mib=81559.0,
                                driver_version="580.1", cuda_driver_version="13.0")
    monkeypatch.setattr(vllm_common, "check_gpu_types", lambda name, count, env=None: [gpu])
    monkeypatch.setattr(vllm_common, "wait_for_gpu_memory",
                        lambda g, u, timeout_s=0: {"gpu_memory_used_before_start_mib": 600.0})
    used = iter([70000.0, 900.0])  # still held once, then freed
    monkeypatch.setattr(vs, "memory_used_mib", lambda uuid: next(used, 900.0))
    monkeypatch.setattr(vs, "MEMORY_FREE_TIMEOUT_S", 5.0)
    spares = Path(tempfile.mkdtemp(prefix="spares-", dir="/tmp"))  # short: a socket path has 107 bytes at most
    monkeypatch.setenv(SPARE_DIR_ENV, str(spares))
    monkeypatch.setenv("FAKE_TEST_PID", str(os.getpid()))  # the fake's parent when the test launched it
    yield state
    kill_spares(spares)
    shutil.rmtree(spares, ignore_errors=True)


def kill_spares(directory: Path) -> None:
    """SIGKILL the process groups of the spares this test left (their command line names ``directory``)."""
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes() if entry.isdigit() else b""
        except OSError:
            continue
        if str(directory).encode() in cmdline and int(entry) != os.getpid():
            try:
                os.killpg(int(entry), signal.SIGKILL)
            except OSError:
                pass


def child_alive(state) -> bool:
    pid = int((state / "child.pid").read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split(")")[1].split()[0] != "Z"


def test_start_run_stop_against_a_fake_vllm_serve(fake, tmp_path):
    c = cfg(f"engine.vllm.compile_cache_dir={tmp_path / 'cc'}")
    assert c.engine.vllm.compile_cache_dir == str(tmp_path / "cc")
    eng = ServerEngine(c, 32)
    eng.start()
    try:
        seen = json.loads((fake / "argv.json").read_text())
        argv = seen["argv"]
        assert argv[0] == "serve" and "--max-num-seqs" in argv and argv[argv.index("--max-num-seqs") + 1] == "32"
        assert argv[argv.index("--load-format") + 1] == "dummy" and argv[argv.index("--host") + 1] == "127.0.0.1"
        assert seen["api_key"] and seen["api_key"] not in " ".join(argv) and seen["cache"] == str(tmp_path / "cc")
        assert "--no-enable-prefix-caching" in argv  # no request finds another cell's prompt cached
        assert seen["core_start"] == "fork"  # the engine core inherits the API server's imports
        plan = build_plan(c.workload, 32)
        wr = eng.run(plan)
    finally:
        eng.stop()
    assert len(wr.records) == len(plan.requests)
    assert all(r.status == "ok" and r.output_tokens == 16 and len(r.token_times_s) == 16 for r in wr.records)
    assert wr.window_end_s - wr.window_start_s == pytest.approx(1.5)
    assert wr.mean_running_batch is not None and 0 <= wr.mean_running_batch <= 32
    assert wr.extra["metrics_scrapes_in_window"] >= 1 and metrics.summarize(wr, plan.rate_rps, True)["send_lag_max_ms"] < 50
    vocab = c.model.vocab_size
    assert [r.prompt_hash for r in wr.records] == [prompt_digest(plan.prompt_ids(s, vocab)) for s in plan.requests]
    assert wr.drain_timeout_s == plan.drain_timeout_s and 0 <= wr.drain_s < 1.0  # 16 tokens take ~0.1 s
    report = eng.stop_report()
    assert report["stop_signal"] in ("SIGTERM", "SIGKILL") and report["gpu_memory_freed"] is True
    assert not child_alive(fake)
    eng.stop()  # idempotent


def test_process_exit_during_start_is_classified_from_the_log(fake, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "oom")
    eng = ServerEngine(cfg(), 8)
    with pytest.raises(CellFailure) as info:
        eng.start()
    assert info.value.status == "oom" and "CUDA out of memory" in str(info.value)
    assert not child_alive(fake)  # the dead server's children were killed with its group
    eng.stop()


def test_health_watchdog_gives_startup_timeout_and_kills_the_group(fake, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")
    c = cfg("engine.vllm.startup_timeout_s=2.0")
    eng = ServerEngine(c, 8)
    with pytest.raises(CellFailure) as info:
        eng.start()
    assert info.value.status == "startup_timeout" and "startup_timeout_s" in str(info.value)
    assert not child_alive(fake)


def test_server_dying_mid_run_fails_the_cell_with_its_status(fake, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "die_later")
    c = cfg("workload.duration_s=1.0")
    eng = ServerEngine(c, 8)
    eng.start()
    try:
        with pytest.raises(CellFailure) as info:
            eng.run(build_plan(c.workload, 8))
        assert info.value.status == "oom" and "during the run" in str(info.value)
    finally:
        eng.stop()
    assert not child_alive(fake)


def test_one_server_cell_through_the_unit_runner(fake):
    from orchestrator.core.messages import UnitSpec
    from orchestrator.driver.grid import cells
    from orchestrator.worker.unit import UnitRunner

    [cell] = cells([cfg()], {})
    assert cell.engine == "vllm" and cell.status is None and cell_engine(cell) is vs.VllmServerEngine
    unit = UnitSpec(key="k", engine="vllm", engine_reason="", sweep="t", cells=(cell,), attempt=1)
    [res] = list(UnitRunner(unit).results())
    assert res.status is Status.ok, res.tables["runs"].to_pylist()[0].get("error")
    assert res.cell_id == cell.cell_id
    row = res.tables["runs"].to_pylist()[0]
    assert row["cell_id"] == cell.cell_id and row["engine"] == "vllm"
    assert row["energy_source"] == "none" and row["n_requests_failed"] == 0
    assert row["window_s"] == pytest.approx(1.5) and row["output_tokens_per_request_mean"] == 16
    assert json.loads(row["engine_extra"])["max_num_seqs"] == 32
    # open loop: drained in time under the per-cell limit; min_window_s (offline) does not apply
    assert row["n_requests_cancelled"] == 0 and row["drain_timeout_s"] == 10.0 and 0 <= row["drain_s"] < 1.0
    assert row["min_window_s"] == 0 and not row["short_window"]
    hashes = res.tables["requests"].column("prompt_hash").to_pylist()
    assert len(hashes) == row["n_requests_total"] and len(set(hashes)) == len(hashes) and None not in hashes
    assert not child_alive(fake)


def test_cells_differing_only_in_workload_share_one_server(fake):
    """Two chat cells at the same --max-num-seqs, different rates: one server start (make_units
    groups them), the second cell starts once the server is idle, each row its own window."""
    from orchestrator.driver.dispatch import make_units
    from orchestrator.driver.grid import cells
    from orchestrator.worker.unit import UnitRunner

    # 64 tokens take 0.32 s: requests arriving in the window's last 0.27 s are cut at the drain limit
    slow = cfg("workload.rate_rps=40.0", "workload.drain_timeout_s=0.05", "workload.output.mean_tokens=64",
               "batch_size=2")
    calm = cfg("workload.rate_rps=5.0", "batch_size=2")
    [unit] = make_units(cells([slow, calm], {}), "t", {"H100": True})
    assert len(unit.cells) == 2 and unit.max_batch_size == 2
    results = list(UnitRunner(unit).results())
    assert [r.status for r in results] == [Status.ok, Status.ok]
    rows = [r.tables["runs"].to_pylist()[0] for r in results]
    starts = {json.loads(r["engine_extra"])["vllm_start_s"] for r in rows}
    assert len(starts) == 1 and {r["engine_shared_cells"] for r in rows} == {2}
    first, second = (json.loads(r["engine_extra"]) for r in rows)
    assert first["server_cell"] == 1 and second["server_cell"] == 2 and second["server_idle_wait_s"] < 5.0
    assert rows[0]["n_requests_cancelled"] > 0 and rows[0]["saturated"]
    assert rows[1]["n_requests_cancelled"] == 0 and rows[1]["n_requests_failed"] == 0
    assert rows[1]["window_start_s"] > rows[0]["window_end_s"]
    assert not child_alive(fake)


def test_the_engine_core_start_method_is_a_setting_not_part_of_the_cell(fake):
    """``engine.vllm.server_core_start=spawn`` reaches ``vllm serve`` as
    ``VLLM_WORKER_MULTIPROC_METHOD`` (even where the worker's environment says otherwise) and
    leaves the cell's id as it is: it changes how fast the server starts, not what it measures."""
    from orchestrator.core.identity import cell_identity
    from orchestrator.errors import ConfigError

    spawned = cfg("engine.vllm.server_core_start=spawn")
    assert cell_identity(spawned, "vllm") == cell_identity(cfg(), "vllm")
    os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "fork"
    try:
        eng = ServerEngine(spawned, 8)
        eng.start()
        eng.stop()
    finally:
        del os.environ["VLLM_WORKER_MULTIPROC_METHOD"]
    assert json.loads((fake / "argv.json").read_text())["core_start"] == "spawn"
    with pytest.raises(ConfigError, match="server_core_start"):
        cfg("engine.vllm.server_core_start=thread")
