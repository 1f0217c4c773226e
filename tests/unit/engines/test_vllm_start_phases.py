"""An engine start broken into its phases from vLLM's log (``engines.vllm.start_phases``), on real
vLLM 0.26.0 logs from an H100 (``data/vllm_logs/h100_*``, llama2_7b, dummy weights, trimmed after
start-up): a cold ``vllm serve`` start, an offline start whose graphs came from the compile cache
and a machine's first offline start (its kernels JIT-compiled in the warm-up after graph capture);
older logs without compile or graph capture (``enforce_eager``) and a failed start; the year and
midnight of the stamps; the phases reaching a runs row's ``engine_extra`` through both engines."""
from __future__ import annotations

import json
import shutil
import time
import types
from dataclasses import asdict, fields
from datetime import datetime

import pytest

from orchestrator.engines.vllm import offline as vo
from orchestrator.engines.vllm import server as vs
from orchestrator.engines.vllm.start_phases import (
    EXTRA_KEY,
    StartPhases,
    engine_core_pid,
    parse_start_phases,
    process_created_unix_s,
    start_phases_of,
)
from tests.unit.engines.test_vllm_engines import VLLM_LOGS, FakeLLM, cfg, fake_vllm  # noqa: F401 (fixture)


def launched(stamp: str) -> float:
    """Unix seconds of a log file's name time (``YYYYmmdd-HHMMSS``, local, the second it was
    opened: its middle)."""
    return time.mktime(time.strptime(stamp, "%Y%m%d-%H%M%S")) + 0.5


# the files' names held their launch time: vllm-serve-20261206-095951-*.log and so on
REAL = {
    "h100_serve_cold.log": (launched("20261206-095951"), StartPhases(
        launch_s=32.0, model_setup_s=4.47, weights_s=2.143182, init_engine_s=23.53, compile_s=14.47,
        compile_cached=False, profiling_s=0.47, graph_capture_s=1.0, warmup_s=6.0, init_other_s=1.59, ready_s=1.0,
        total_s=61.0, weights_gib=12.55, kv_cache_gib=57.71, graph_memory_gib=0.11, vllm_version="0.26.0")),
    "h100_offline_compile_cached.log": (launched("20261206-100507"), StartPhases(
        launch_s=29.0, model_setup_s=4.55, weights_s=2.113189, init_engine_s=12.45, compile_s=3.34,
        compile_cached=True, profiling_s=0.09, graph_capture_s=1.0, warmup_s=6.0, init_other_s=2.02,
        weights_gib=12.55, kv_cache_gib=57.07, graph_memory_gib=0.16, vllm_version="0.26.0")),
    "h100_offline_first_start.log": (launched("20261206-095401"), StartPhases(
        launch_s=46.0, model_setup_s=3.42, weights_s=2.2213, init_engine_s=97.58, compile_s=15.45,
        compile_cached=False, profiling_s=0.79, graph_capture_s=1.0, warmup_s=78.0, init_other_s=2.34,
        weights_gib=12.55, kv_cache_gib=57.02, graph_memory_gib=0.16, vllm_version="0.26.0")),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_phases_of_real_h100_starts(name):
    """Offline logs have no ready line (ready is our clock's, given by the engine): ready and
    total are None here; the server's ready is its ``Starting vLLM server on`` stamp."""
    t0, want = REAL[name]
    got = parse_start_phases((VLLM_LOGS / name).read_text(), t0)
    assert got == want
    inside = got.compile_s + got.profiling_s + got.graph_capture_s + got.warmup_s + got.init_other_s
    assert inside == pytest.approx(got.init_engine_s)  # the parts of vLLM's init engine add up to it
    assert got.weights_s < got.model_setup_s


def test_the_phases_add_up_to_launch_to_ready():
    t0 = launched("20261206-095951")
    p = parse_start_phases((VLLM_LOGS / "h100_serve_cold.log").read_text(), t0, t0 + 61.3)
    assert p.total_s == pytest.approx(61.3) and p.ready_s == pytest.approx(1.3)
    assert p.launch_s + p.model_setup_s + p.init_engine_s + p.ready_s == pytest.approx(p.total_s)


def test_the_first_start_on_a_machine_spends_its_warm_up_compiling_kernels():
    """The same engine a few minutes apart: the first start's warm-up after graph capture took
    78 s (kernels JIT-compiled), the next one's a few seconds; a compile-cache hit cuts torch.compile."""
    first = parse_start_phases((VLLM_LOGS / "h100_offline_first_start.log").read_text())
    cached = parse_start_phases((VLLM_LOGS / "h100_offline_compile_cached.log").read_text())
    assert first.warmup_s > 60 and cached.warmup_s < 10
    assert not first.compile_cached and cached.compile_cached and cached.compile_s < first.compile_s / 4


def test_launch_splits_at_the_engine_core_process_creation():
    """The engine core's pid comes from the log's prefix (offline and server logs alike); a live
    process's creation time (a real child here) splits the launch into the frontend's part and the
    core's boot; a pid that is gone gives None, never an error."""
    import subprocess
    import sys

    assert engine_core_pid((VLLM_LOGS / "h100_serve_cold.log").read_text()) == 3458
    assert engine_core_pid((VLLM_LOGS / "h100_offline_compile_cached.log").read_text()) == 4851
    assert engine_core_pid("INFO 12-06 10:00:08 [api_server.py:1] no engine core yet") is None
    before = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        created = process_created_unix_s(child.pid)
        assert created is not None and before - 0.05 <= created <= time.time() + 0.05
    finally:
        child.kill()
        child.wait()
    assert process_created_unix_s(child.pid) is None and process_created_unix_s(None) is None
    t0 = launched("20261206-095951")
    core_line = datetime(2026, 12, 6, 10, 0, 23).timestamp() + 0.5  # "Initializing a V1 LLM engine"
    p = parse_start_phases((VLLM_LOGS / "h100_serve_cold.log").read_text(), t0, None, core_line - 14.0)
    assert p.frontend_s == pytest.approx(18.0) and p.core_boot_s == pytest.approx(14.0)
    assert p.frontend_s + p.core_boot_s == pytest.approx(p.launch_s)
    assert parse_start_phases((VLLM_LOGS / "h100_serve_cold.log").read_text(), t0).frontend_s is None
    # a forked core logs within its first second: created after the stamp's middle reads as 0, not -0.4
    forked = parse_start_phases((VLLM_LOGS / "h100_serve_cold.log").read_text(), t0, None, core_line + 0.4)
    assert forked.core_boot_s == 0.0 and forked.frontend_s == pytest.approx(32.4)


def test_eager_starts_have_no_compile_and_no_graph_capture():
    """``enforce_eager`` (an H200 log): no compile or capture lines -> None, not 0; vLLM's init
    engine is all "other"; without a launch time the launch phase is unknown."""
    p = parse_start_phases((VLLM_LOGS / "h200_offline_fp8.log").read_text())
    assert p.compile_s is p.compile_cached is p.graph_capture_s is p.warmup_s is p.profiling_s is None
    assert p.init_engine_s == 3.39 and p.init_other_s == 3.39 and p.weights_s == 3.003099 and p.weights_gib == 6.74
    assert p.launch_s is None and p.total_s is None and p.kv_cache_gib == 62.24


def test_a_failed_start_has_only_what_it_reached():
    p = parse_start_phases((VLLM_LOGS / "serve_oom_profiling.log").read_text())
    assert p.weights_s == 3.412873 and p.init_engine_s is None and p.init_other_s is None
    assert parse_start_phases("") == StartPhases()


def test_stamps_take_the_year_nearest_the_launch_and_cross_midnight():
    """A start launched on 31 Dec at 23:59:50 whose engine core logs at 00:00:10 on 1 Jan."""
    text = ("(EngineCore pid=1) INFO 01-01 00:00:10 [core.py:116] Initializing a V1 LLM engine (v0.26.0) with "
            "config: x\n"
            "(EngineCore pid=1) INFO 01-01 00:00:20 [core.py:340] init engine (profile, create kv cache, warmup "
            "model) took 5.00 s\n")
    t0 = datetime(2026, 12, 31, 23, 59, 50).timestamp()
    p = parse_start_phases(text, t0, t0 + 31.0)
    assert p.launch_s == 20.5 and p.model_setup_s == 5.0 and p.ready_s == 0.5 and p.total_s == 31.0


def test_older_wordings_read_the_same():
    text = ("INFO 07-24 11:07:40 [gpu_model_runner.py:1] Model loading took 3.88 GiB memory and 2.713904 seconds\n"
            "INFO 07-24 11:07:50 [monitor.py:1] torch.compile takes 10.30 s in total\n"
            "INFO 07-24 11:07:50 [backends.py:1] Directly load the compiled graph(s) for dynamic shape from the "
            "cache, took 4.100 s\n"
            "INFO 07-24 11:08:25 [core.py:194] init engine (profile, create kv cache, warmup model) took 33.27 "
            "seconds\n")
    p = parse_start_phases(text)
    assert (p.weights_s, p.weights_gib, p.compile_s, p.compile_cached, p.init_engine_s) == (
        2.713904, 3.88, 10.3, True, 33.27)


def test_phases_round_trip_through_engine_extra():
    p = parse_start_phases((VLLM_LOGS / "h100_serve_cold.log").read_text(), launched("20261206-095951"))
    extra = json.dumps({"vllm_start_s": 61.0, EXTRA_KEY: p.as_extra()})
    assert start_phases_of(extra) == p and start_phases_of(json.loads(extra)) == p
    assert start_phases_of(json.dumps({"vllm_start_s": 61.0})) is None  # a row from before phases
    assert start_phases_of(None) is None and start_phases_of("") is None and start_phases_of("{bad") is None
    later = {EXTRA_KEY: {**p.as_extra(), "a_later_field_s": 1.0}}  # a newer writer's field: ignored
    assert start_phases_of(later) == p
    assert set(asdict(p)) == {f.name for f in fields(StartPhases)}


# ------------------------------------------------------------------------------- through the engines


def test_the_offline_engine_records_its_start_phases(fake_vllm):  # noqa: F811
    FakeLLM.start_log = (VLLM_LOGS / "h100_offline_compile_cached.log").read_text()
    eng = vo.VllmOfflineEngine(cfg(num_batches=1, warmup_batches=0, min_window_s=0), 4)
    t0 = time.time()
    eng.start()
    p = StartPhases(**eng._start_info[EXTRA_KEY])
    assert p.compile_cached and p.compile_s == 3.34 and p.init_engine_s == 12.45 and p.weights_s == 2.113189
    assert 0 <= p.total_s <= time.time() - t0 + 0.01  # launch -> LLM returned, on our clock
    eng.stop()


def test_the_server_engine_records_its_start_phases(fake_vllm, tmp_path, monkeypatch):  # noqa: F811
    """``vllm serve`` stood in by its real log: the phases run from our launch to /health 200."""
    def launch(self, model, api_key, spare=True):
        self._log_path = tmp_path / "vllm-serve.log"
        shutil.copy(VLLM_LOGS / "h100_serve_cold.log", self._log_path)
        self._launched_unix_s = time.time()
        return types.SimpleNamespace(poll=lambda: None)

    monkeypatch.setattr(vs.VllmServerEngine, "_launch", launch)
    monkeypatch.setattr(vs.VllmServerEngine, "_wait_healthy", lambda self, proc, timeout_s, t0: time.sleep(0.05))
    eng = vs.VllmServerEngine(cfg(workload="chat_medium"), 8)
    eng.start()
    p = StartPhases(**eng._start_info[EXTRA_KEY])
    assert p.compile_s == 14.47 and p.graph_capture_s == 1.0 and p.kv_cache_gib == 57.71
    assert p.total_s == pytest.approx(eng._start_info["vllm_start_s"], abs=0.05) and p.total_s >= 0.05
    assert eng._start_info["vllm_linear_kernel"] is None  # what vLLM ran is still read from the same log


def test_phases_become_runs_columns_and_older_files_read_them_null(tmp_path):
    import pyarrow.parquet as pq

    from orchestrator.store.cell_tables import extra_columns
    from orchestrator.store.schema import START_COMPILE_CACHED, START_PHASE_COLUMNS, runs_table
    from orchestrator.store.sweep_store import Store

    p = parse_start_phases((VLLM_LOGS / "h100_serve_cold.log").read_text(), launched("20261206-095951"))
    cols = extra_columns({EXTRA_KEY: p.as_extra(), "vllm_linear_kernel": None})
    assert {c: cols[c] for c in ("start_launch_s", "start_compile_s", "start_ready_s", START_COMPILE_CACHED)} == {
        "start_launch_s": 32.0, "start_compile_s": 14.47, "start_ready_s": 1.0, START_COMPILE_CACHED: False}
    assert not any(c.startswith("start_") for c in extra_columns({}))  # other engines: the columns stay null
    store = Store.open(str(tmp_path))
    store.write_cell("new", {"runs": runs_table([{"cell_id": "new", **cols}])})
    older = runs_table([{"cell_id": "old"}]).drop_columns([*START_PHASE_COLUMNS, START_COMPILE_CACHED])
    pq.write_table(older, store.path("runs", "old"))
    read = store.runs_columns(["cell_id", "start_compile_s", START_COMPILE_CACHED]).to_pylist()
    got = {r["cell_id"]: r for r in read}
    assert got["new"]["start_compile_s"] == 14.47 and got["new"][START_COMPILE_CACHED] is False
    assert got["old"]["start_compile_s"] is None and got["old"][START_COMPILE_CACHED] is None
