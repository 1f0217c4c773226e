"""The hf engine for real on the CPU: a tiny Llama (random weights saved by the project) driven
in-process, then through the orchestrator on a real local Ray cluster into Parquet."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest

from orchestrator.app.hydra_entry import typed
from orchestrator.client import metrics
from orchestrator.client import model_files as models
from orchestrator.client.workload import build_plan
from orchestrator.config.groups import WorkloadKind
from orchestrator.config.root import CellConfig
from orchestrator.driver.grid import cell_configs
from orchestrator.engines import engine_for
from orchestrator.engines.hf.engine import HfEngine
from orchestrator.errors import CellFailure, Status
from orchestrator.store.sweep_store import load
from tests.conftest import run_orchestrator

ENERGY_COLUMNS = ("energy_j", "energy_integrated_j", "net_energy_j", "energy_per_request_j",
                  "energy_per_1k_output_tokens_j")


@pytest.fixture
def model_cache(tmp_path, monkeypatch):
    path = tmp_path / "models"
    monkeypatch.setenv("ORCHESTRATOR_MODEL_CACHE", str(path))
    return path


def _config(compose, *overrides) -> CellConfig:
    """The typed cell config of a real Hydra compose (validated like a sweep's)."""
    [cfg] = cell_configs([typed(compose(["engine=hf", "model=tiny", "workload=offline", *overrides]))])
    return cfg


def test_in_process_batches_of_mixed_lengths_count_every_request_exactly(compose, model_cache):
    cfg = _config(compose, "batch_size=3", "workload.num_batches=2", "workload.min_window_s=0", "workload.input.dist=uniform",
                  "workload.input.std_tokens=8", "workload.input.mean_tokens=24", "workload.output.dist=uniform",
                  "workload.output.std_tokens=6", "workload.output.mean_tokens=12")
    plan = build_plan(cfg.workload, 3)
    assert engine_for("hf", WorkloadKind.offline) is HfEngine
    engine = HfEngine(cfg, max_batch_size=3)
    engine.start()
    try:
        run = engine.run(plan)
    finally:
        engine.stop()
    assert engine.device == "cpu" and engine.dtype == "float32" and not engine.uses_gpu
    assert "checkpoint" in engine.weights and any(model_cache.rglob("model.safetensors"))
    recs = run.records
    assert [r.index for r in recs] == [s.index for s in plan.requests]
    assert len({r.requested_output_tokens for r in recs}) > 1  # the batches really mix lengths
    for r, spec in zip(recs, plan.requests):
        assert r.status == "ok" and r.output_tokens == spec.output_tokens == len(r.token_times_s)
        assert r.input_tokens == spec.input_tokens and r.phase == spec.phase
        assert r.send_s <= r.first_token_s <= r.end_s and np.all(np.diff(r.token_times_s) >= 0)
    first_measured = min(r.send_s for r in recs if r.phase == "measured")
    assert run.window_start_s == first_measured and run.window_end_s >= max(r.end_s for r in recs)
    assert run.extra["ttft_method"].startswith("streamer") and run.extra["device"] == "cpu"
    vocab = cfg.model.vocab_size
    assert [r.prompt_hash for r in recs] == [models.prompt_digest(plan.prompt_ids(s, vocab)) for s in plan.requests]
    assert len(run.batch_bounds_s) == 2 and run.batch_bounds_s[0][0] == run.window_start_s


def test_in_process_batches_run_until_the_window_reaches_min_window_s(compose, model_cache):
    """The real model on the CPU: static batches of a few ms, measured until the window is 0.5 s
    (far more than num_batches=2), or only up to max_batches."""
    cfg = _config(compose, "batch_size=2", "workload.num_batches=2", "workload.min_window_s=0.5",
                  "workload.input.mean_tokens=8", "workload.output.mean_tokens=4")
    engine = HfEngine(cfg, max_batch_size=2)
    engine.start()
    try:
        run = engine.run(build_plan(cfg.workload, 2))
        capped = _config(compose, "batch_size=2", "workload.num_batches=2", "workload.min_window_s=60",
                         "workload.max_batches=3", "workload.input.mean_tokens=8", "workload.output.mean_tokens=4")
        short = engine.run(build_plan(capped.workload, 2))
    finally:
        engine.stop()
    bounds = run.batch_bounds_s
    assert len(bounds) > 2 and run.window_end_s - run.window_start_s >= 0.5 > bounds[-2][1] - bounds[0][0]
    meas = [r for r in run.records if r.phase == "measured"]
    assert len(meas) == 2 * len(bounds) and all(r.status == "ok" and r.output_tokens == 4 for r in meas)
    assert len({r.prompt_hash for r in run.records}) == len(run.records)  # extra batches: new prompts too
    row = metrics.summarize(run, None, True)
    assert row["n_batches_measured"] == len(bounds) and 0 <= row["batch_output_tok_s_cv"] < 1
    assert len(short.batch_bounds_s) == 3 and short.window_end_s - short.window_start_s < 60


def test_int8_on_the_cpu_ends_unsupported_at_start(compose, model_cache):
    engine = HfEngine(_config(compose, "quantization=int8"), max_batch_size=1)
    with pytest.raises(CellFailure) as err:
        engine.start()
    engine.stop()
    assert err.value.status is Status.unsupported


def _runs_by_batch(out):
    t = load(str(out))
    return t, {r["batch_size"]: r for r in t.runs.to_pylist()}


@pytest.fixture(scope="module")
def hf_sweep(tmp_path_factory):
    """One real sweep: the tiny model on the CPU at batch sizes 1, 2 and 4, the three cells on one
    engine start, through Ray into Parquet (windows of exactly num_batches: min_window_s=0)."""
    tmp = tmp_path_factory.mktemp("hf_sweep")
    out = tmp / "hf"
    env = {"ORCHESTRATOR_MODEL_CACHE": str(tmp / "models")}
    proc = run_orchestrator(["-m", "engine=hf", "model=tiny", "batch_size=1,2,4", "workload=offline",
                             f"store.dir={out}", "workload.num_batches=2", "workload.min_window_s=0",
                             "dispatch.num_cpus=2"], env=env)
    return out, proc


def test_batch_sizes_through_ray_into_parquet(hf_sweep):
    out, proc = hf_sweep
    assert "sweep done: 3 ok" in proc.stdout
    t, runs = _runs_by_batch(out)
    assert sorted(runs) == [1, 2, 4]
    req = t.requests.to_pandas()
    for bs, r in runs.items():
        assert r["status"] == "ok" and r["engine"] == "hf" and r["engine_shared_cells"] == 3
        assert r["n_requests_measured"] == 2 * bs and r["n_requests_total"] == 3 * bs  # + 1 warm-up batch
        assert r["n_batches_measured"] == 2 and r["min_window_s"] == 0 and r["batch_output_tok_s_cv"] >= 0
        assert r["n_requests_cancelled"] == 0 and r["drain_s"] is None  # offline: nothing to drain
        assert r["output_throughput_tok_s"] > 0 and r["output_tokens_in_window"] == 2 * bs * 128
        assert not r["token_count_mismatch"] and r["output_tokens_per_request_mean"] == 128
        assert r["energy_source"] == "none" and "CPU" in r["energy_note"]
        assert all(r[c] is None or np.isnan(r[c]) for c in ENERGY_COLUMNS)
        assert json.loads(r["engine_extra"])["device"] == "cpu"
        assert set(json.loads(r["engine_versions"])) >= {"torch", "transformers", "bitsandbytes"}
        cell = req[req.cell_id == r["cell_id"]]
        assert len(cell) == 3 * bs and (cell.phase == "measured").sum() == 2 * bs
        assert (cell.output_tokens == cell.requested_output_tokens).all() and (cell.n_token_times == 128).all()
        assert (cell.first_token_s <= cell.end_s).all() and (cell.ttft_ms > 0).all()
        assert (cell.ttft_ms <= cell.e2e_ms).all() and (cell.status == "ok").all()
    assert pc.sum(pc.equal(t.power.column("cell_id"), runs[1]["cell_id"])).as_py() in (0, None)


def test_cells_sharing_an_engine_never_send_the_same_prompt(hf_sweep):
    """Prompts are keyed by the cell: the three cells of one engine start (no cache to reuse in
    between) sent pairwise disjoint prompts, every request its own (from the stored prompt_hash)."""
    out, _ = hf_sweep
    t, runs = _runs_by_batch(out)
    assert {r["engine_shared_cells"] for r in runs.values()} == {3}
    req = t.requests.to_pandas().sort_values(["cell_id", "request_index"])
    hashes = {bs: req.loc[req.cell_id == r["cell_id"], "prompt_hash"].tolist() for bs, r in runs.items()}
    for bs, hs in hashes.items():
        assert len(hs) == 3 * bs and all(isinstance(h, str) and len(h) == 16 for h in hs)
        assert len(set(hs)) == len(hs)  # warm-up and measured requests alike
    assert not set(hashes[1]) & set(hashes[2]) and not set(hashes[1]) & set(hashes[4])
    assert not set(hashes[2]) & set(hashes[4])
    # and they are the prompts plan_for builds for each stored cell
    from orchestrator.workloads import plan_for
    from orchestrator.config.root import cell_config_from_json

    for bs, r in runs.items():
        cfg = cell_config_from_json(r["config_json"])
        plan = plan_for(cfg, r["cell_id"])
        expected = [models.prompt_digest(plan.prompt_ids(s, cfg.model.vocab_size)) for s in plan.requests]
        assert hashes[bs] == expected


def test_smoke_sweep_runs_offline_cells_and_marks_chat_cells_unsupported(tmp_path):
    out = tmp_path / "smoke"
    env = {"ORCHESTRATOR_MODEL_CACHE": str(tmp_path / "models")}
    proc = run_orchestrator(["engine=hf", "model=tiny", "+sweep=smoke", f"store.dir={out}", "dispatch.num_cpus=2",
                             "workload.min_window_s=0"], env=env)
    assert "3 not launchable" in proc.stdout and "sweep done: 3 unsupported, 3 ok" in proc.stdout
    rows = load(str(out)).runs.to_pylist()
    offline = [r for r in rows if r["workload"] == "offline"]
    chat = [r for r in rows if r["workload"] == "chat_medium"]
    assert len(offline) == 3 and all(r["status"] == "ok" and r["energy_source"] == "none" for r in offline)
    assert len(chat) == 3 and all(r["status"] == "unsupported" and "static batches only" in r["error"] for r in chat)
