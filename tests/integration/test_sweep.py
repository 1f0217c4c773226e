"""End to end on a real local Ray cluster: the smoke sweep, resume after a kill, placement by GPU
type; what a cell's identity holds (settings re-run nothing, another engine's result never
satisfies a cell); a version-1 store still loads and reports."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc

from orchestrator.analysis import read_sweep
from orchestrator.config.groups import Arrival
from orchestrator.config.root import CellConfig
from orchestrator.core.cell import EngineChoice
from orchestrator.driver import grid
from orchestrator.driver.runner import plan_cells
from orchestrator.store.sweep_store import Store, load
from tests.conftest import ROOT, run_orchestrator

V1_STORE = ROOT / "experiments" / "h100_llama2_7b" / "vllm_offline"


def test_smoke_sweep_end_to_end_and_rerun_skips(tmp_path):
    out = tmp_path / "smoke"
    proc = run_orchestrator(["+sweep=smoke", f"store.dir={out}", "dispatch.num_cpus=2"])
    assert "engine=auto: simulated for 6 H100 cells (the Ray cluster offers no H100 GPU)" in proc.stdout
    assert "sweep done: 6 ok" in proc.stdout
    t = load(str(out))
    runs = t.runs.to_pylist()
    assert len(runs) == 6 and {r["engine"] for r in runs} == {"simulated"}
    assert {r["batch_size"] for r in runs} == {1, 4, 16}
    for r in runs:
        assert r["energy_source"] == "simulated" and r["energy_j"] > 0 and r["output_throughput_tok_s"] > 0
        assert r["output_tokens_per_request_mean"] == 128 and not r["token_count_mismatch"]
        n = pc.sum(pc.equal(t.requests.column("cell_id"), r["cell_id"])).as_py()
        assert n == r["n_requests_total"]
    offline = [r for r in runs if r["workload"] == "offline"]
    # at least num_batches=2 measured batches, more until the (virtual) window reaches min_window_s
    for r in offline:
        assert r["n_batches_measured"] >= 2 and r["n_requests_measured"] == r["n_batches_measured"] * r["batch_size"]
        assert r["window_s"] >= r["min_window_s"] == 10.0 and not r["short_window"]
    assert max(r["n_batches_measured"] for r in offline) > 2  # BS 1 batches are short: the window rule adds some
    chat = [r for r in runs if r["workload"] == "chat_medium"]
    assert all(r["drain_timeout_s"] == 10.0 and r["drain_s"] is not None and r["min_window_s"] == 0 for r in chat)
    assert all((r["n_requests_cancelled"] > 0) <= r["saturated"] for r in chat)
    again = run_orchestrator(["+sweep=smoke", f"store.dir={out}"])
    # engine=auto is resolved on the cluster again (the resolved engine is part of a cell's
    # identity), then every cell is found complete: nothing is dispatched
    assert "engine=auto: simulated for 6 H100 cells" in again.stdout
    assert "0 to run, 6 already complete" in again.stdout and "dispatched" not in again.stdout
    assert "sweep done: 6 ok" in again.stdout and load(str(out)).runs.num_rows == 6


def test_the_log_level_reaches_the_workers(tmp_path):
    """``log_level=DEBUG`` (or ORCHESTRATOR_LOG_LEVEL) reaches the Ray workers: a worker's debug line
    shows on the driver's console; at the default (INFO) it does not."""
    args = ["model=tiny", "gpu=t4", "workload=offline", "batch_size=1", "engine=simulated",
            "workload.num_batches=1", "workload.min_window_s=0", "dispatch.num_cpus=1"]
    debug = run_orchestrator([*args, f"store.dir={tmp_path / 'debug'}", "log_level=DEBUG"])
    assert "orchestrator.worker.unit: unit " in debug.stdout + debug.stderr
    env = run_orchestrator([*args, f"store.dir={tmp_path / 'env'}"], env={"ORCHESTRATOR_LOG_LEVEL": "DEBUG"})
    assert "orchestrator.worker.unit: unit " in env.stdout + env.stderr
    quiet = run_orchestrator([*args, f"store.dir={tmp_path / 'info'}"])
    assert "orchestrator.worker.unit: unit " not in quiet.stdout + quiet.stderr
    bad = run_orchestrator([*args, f"store.dir={tmp_path / 'bad'}", "log_level=LOUD"], check=False)
    assert bad.returncode == 2 and "log_level=LOUD" in bad.stderr + bad.stdout


def test_failed_cells_exit_3_with_their_reasons_and_the_command_that_lists_them(tmp_path):
    """A sweep whose launched cell did not end ok exits 3 (not 0), its closing lines name each
    failure status with its count and reason and the command that lists every failed cell; that
    command lists it. Pre-launch statuses (infeasible) are no failure: alone they exit 0."""
    out = tmp_path / "failing"
    args = ["model=llama2_7b", "gpu=h100", "workload=offline", "engine=simulated", "engine.simulated.pace_s=30",
            "dispatch.cell_timeout_s=2", "dispatch.max_retries=0", "dispatch.num_cpus=1", f"store.dir={out}"]
    proc = run_orchestrator(["-m", "batch_size=1,4096", *args], check=False, timeout=180)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert "1 launched cells did not end ok:" in lines and "  1 timeout:" in lines
    assert any(line.startswith("    1 × cancelled after 2.0 s per cell") for line in lines), lines
    command = f"python -m orchestrator.store {out} --failed"
    assert f"every failed cell with its reason: {command}" in lines
    listed = subprocess.run([sys.executable, "-m", "orchestrator.store", str(out), "--failed"], capture_output=True,
                            text=True, cwd=ROOT, check=True).stdout.splitlines()
    assert len(listed) == 1 and listed[0].startswith("timeout") and "llama2_7b/none/h100/bs1/offline/r0" in listed[0]
    assert "cancelled after 2.0 s per cell" in listed[0]   # the infeasible batch of 4,096 is no failure
    infeasible = run_orchestrator(["batch_size=4096", *args[:-1], f"store.dir={tmp_path / 'only'}"], timeout=120)
    assert infeasible.returncode == 0 and "did not end ok" not in infeasible.stdout


def test_killed_sweep_resumes_each_cell_exactly_once(tmp_path):
    out = tmp_path / "resume"
    args = [sys.executable, "-m", "orchestrator", "-m", "engine=simulated", "workload=chat_medium",
            "batch_size=1,2,3,4,6,8,12,16", "gpu=h100,h200", "workload.duration_s=20",
            # a wall second per cell (outside the identity): cells finish one by one, so the kill
            # lands mid-sweep however fast the machine is (16 instant cells once all ended first)
            "engine.simulated.pace_s=1",
            f"store.dir={out}", "dispatch.num_cpus=1", "dispatch.progress=false"]
    env = {**os.environ}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    runs_dir = out / "runs"
    deadline = time.time() + 240
    while time.time() < deadline:
        if runs_dir.exists() and len(list(runs_dir.glob("*.parquet"))) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # driver and its local Ray cluster, mid-sweep
    proc.wait()
    done_before = len(list(runs_dir.glob("*.parquet")))
    assert 3 <= done_before < 16
    second = run_orchestrator(args[3:], timeout=400)
    assert f"{16 - done_before} to run, {done_before} already complete" in second.stdout
    t = load(str(out))
    ids = t.runs.column("cell_id").to_pylist()
    assert len(ids) == 16 == len(set(ids))
    keys = list(zip(t.requests.column("cell_id").to_pylist(), t.requests.column("request_index").to_pylist()))
    assert len(keys) == len(set(keys))
    assert not list(Path(out).rglob("*.tmp-*"))


def test_gpu_cells_land_on_their_gpu_type(tmp_path, ray_nodes):
    ray_nodes.head(num_cpus=1, num_gpus=1, resources=json.dumps({"accelerator_type:T4": 1}))
    ray_nodes.worker(num_cpus=1, num_gpus=1, resources=json.dumps({"accelerator_type:H100": 1}))
    nodes = ray_nodes.wait_nodes(2)
    node_type = {n["NodeID"]: next(k.split(":")[1] for k in n["Resources"] if k.startswith("accelerator_type:"))
                 for n in nodes}
    out = tmp_path / "placed"
    proc = run_orchestrator(["-m", "engine=simulated", "gpu=t4,h100", "batch_size=1,2,4", "workload=offline",
                             "model=llama2_7b_awq", "workload.num_batches=1", f"store.dir={out}",
                             f"dispatch.address={ray_nodes.address}", "dispatch.place_as_gpu=true",
                             "dispatch.progress=false"])
    assert "attached to the Ray cluster" in proc.stdout
    runs = load(str(out)).runs.to_pylist()
    assert len(runs) == 6 and all(r["status"] == "ok" for r in runs)
    for r in runs:
        assert node_type[r["node_id"]] == r["accelerator_type"], r["cell_id"]
        assert f"accelerator_type:{r['accelerator_type']}" in json.loads(r["assigned_resources"])
    assert {node_type[r["node_id"]] for r in runs} == {"T4", "H100"}


SMALL = ["engine=simulated", "model=llama2_7b", "workload=offline", "workload.num_batches=1", "dispatch.num_cpus=1",
         "dispatch.progress=false"]


def test_settings_outside_the_identity_re_run_nothing(tmp_path):
    out = tmp_path / "settings"
    sweep = ["-m", *SMALL, "gpu=h100,a100", "batch_size=1,2", f"store.dir={out}"]
    first = run_orchestrator(sweep)
    assert "4 to run, 0 already complete" in first.stdout and "sweep done: 4 ok" in first.stdout
    before = Store.open(str(out)).completed()
    assert len(before) == 4 and set(before.values()) == {"ok"}
    files = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")}
    # a timeout of another engine and the simulator's pacing are settings, not identity
    again = run_orchestrator([*sweep, "engine.vllm.startup_timeout_s=900", "engine.simulated.pace_s=0.1"])
    assert "4 cells — 0 to run, 4 already complete" in again.stdout and "sweep done: 4 ok" in again.stdout
    assert "Ray" not in again.stdout and "dispatched" not in again.stdout  # explicit engine: no cluster needed
    assert Store.open(str(out)).completed() == before
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet")} == files
    # the same grid composed here has the stored ids; an identity field of the engine changes them
    axes = [o for o in SMALL if not o.startswith("dispatch.")]
    configs = [grid.config_of([*axes, f"gpu={g}", f"batch_size={b}", "engine.simulated.pace_s=0.1",
                               "engine.vllm.startup_timeout_s=900"]) for g in ("h100", "a100") for b in (1, 2)]
    assert {c.cell_id for c in grid.cells(configs, {})} == set(before)
    changed = grid.config_of([*axes, "gpu=h100", "batch_size=1", "engine.simulated.step_overhead_s=0.002"])
    [cell] = grid.cells([changed], {})
    assert cell.cell_id not in before


def test_a_simulated_result_does_not_satisfy_a_vllm_cell(tmp_path):
    out = tmp_path / "simulated"
    axes = ["model=llama2_7b", "gpu=h100", "workload=offline", "batch_size=4", "workload.num_batches=1"]
    proc = run_orchestrator(["engine=simulated", *axes, f"store.dir={out}", "dispatch.num_cpus=1",
                             "dispatch.progress=false"])
    assert "sweep done: 1 ok" in proc.stdout
    stored = Store.open(str(out)).completed()
    [sim] = grid.cells([grid.config_of(["engine=simulated", *axes])], {})
    assert stored == {sim.cell_id: "ok"}  # the config composed here is the one that ran
    vllm_cfg = grid.config_of(["engine=vllm", *axes])
    assert vllm_cfg.workload.arrival is Arrival.offline and vllm_cfg.engine.name == "vllm"
    [vllm] = grid.cells([vllm_cfg], {})
    assert vllm.engine == "vllm" and vllm.status is None  # launchable: it would be measured
    assert vllm.cell_id not in stored
    assert plan_cells([vllm], stored, retry_failed=True).run == [vllm]
    # a failed cell stays failed with retry_failed=false, but a busy GPU says nothing of the cell
    assert plan_cells([vllm], {vllm.cell_id: "oom"}, retry_failed=False).skip == [vllm]
    assert plan_cells([vllm], {vllm.cell_id: "gpu_busy"}, retry_failed=False).run == [vllm]
    # engine=auto: the resolved engine decides, not the requested name
    auto_cfg = grid.config_of(["engine=auto", *axes])
    [auto_sim] = grid.cells([auto_cfg], {"H100": EngineChoice("simulated", "no H100 here")})
    [auto_vllm] = grid.cells([auto_cfg], {"H100": EngineChoice("vllm", "an H100 with vllm")})
    assert auto_sim.cell_id == sim.cell_id and auto_vllm.cell_id == vllm.cell_id not in stored


def test_a_version_1_store_still_loads_and_reports(tmp_path):
    copy = tmp_path / "v1"
    shutil.copytree(V1_STORE, copy)
    shutil.rmtree(copy / "report", ignore_errors=True)
    t = load(str(copy))
    runs = t.runs.to_pylist()
    assert len(runs) == 4 and {r["schema_version"] for r in runs} == {1} and {r["status"] for r in runs} == {"ok"}
    assert t.requests.num_rows > 0 and t.power.num_rows > 0
    assert set(Store.open(str(copy)).completed()) == {r["cell_id"] for r in runs}
    data = read_sweep(str(copy))
    assert set(data.configs) == {r["cell_id"] for r in runs} and len(data.ok) == 4
    for r in runs:
        cfg = data.configs[r["cell_id"]]
        assert isinstance(cfg, CellConfig) and cfg.model.name == "llama2_7b" == r["model"]
        assert cfg.gpu.name == "h100" and cfg.engine.name == "vllm" and cfg.batch_size == r["batch_size"]
        assert cfg.workload.arrival is Arrival.offline and cfg.model.n_layers == 32
        # version-1 ids hashed the whole config: the same cell has another id now (it would re-run)
        [now] = grid.cells([cfg], {})
        assert now.cell_id != r["cell_id"]
    proc = subprocess.run([sys.executable, "-m", "orchestrator.report", str(copy)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (copy / "report" / "report.md").read_text()
    assert "## 1. Executive summary" in text


def test_a_bad_file_is_set_aside_the_resume_re_runs_its_cell_and_the_report_reads_the_rest(tmp_path):
    """Issue 27: a truncated or garbage Parquet file in a store crashed both a resumed sweep and the
    report. Now the file is moved aside (named in one line), a resume measures its cell again, and
    the report reads every other cell."""
    out = tmp_path / "store"
    args = ["-m", "batch_size=1,2", "model=tiny", "gpu=t4", "workload=offline", "engine=simulated",
            "dispatch.num_cpus=1", f"store.dir={out}"]
    run_orchestrator(args, timeout=180)
    [first, second] = sorted((out / "runs").glob("*.parquet"))
    first.write_bytes(first.read_bytes()[:40])  # truncated
    again = run_orchestrator(args, timeout=180)
    text = again.stdout + again.stderr
    assert f"unreadable file {first} moved aside" in text and "1 to run, 1 already complete" in again.stdout
    assert "sweep done: 2 ok" in again.stdout and first.exists()  # measured again, under its own name
    (out / "requests" / second.name).write_bytes(b"garbage" * 100)
    rep = subprocess.run([sys.executable, "-m", "orchestrator.report", str(out), "--out", str(tmp_path / "rep"),
                          "--no-html"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert f"unreadable file {out / 'requests' / second.name} moved aside" in rep.stderr
    moved = sorted(p.parent.name for p in (out / "unreadable").rglob("*.parquet"))
    assert moved == ["power", "power", "requests", "requests", "runs", "runs", "steps", "steps"]  # both cells, every file kept


def test_on_the_local_cluster_a_cell_no_node_can_run_fails_at_once(tmp_path):
    """Issue 27: ``engine=vllm`` on a machine without a GPU waited 120 s printing Ray's autoscaler
    lines. The local cluster this command starts never grows: such a cell ends ``unschedulable`` at
    once, with one line of what the cluster offers, and the command exits 3."""
    t0 = time.monotonic()
    proc = run_orchestrator(["engine=vllm", "gpu=h100", "model=tiny", "workload=offline", "batch_size=1",
                             "dispatch.num_cpus=1", f"store.dir={tmp_path / 'none'}"], check=False, timeout=120)
    wall_s = time.monotonic() - t0
    text = proc.stdout + proc.stderr
    assert proc.returncode == 3 and "sweep done: 1 unschedulable" in proc.stdout, text[-3000:]
    assert "no node of the local Ray cluster can run it: it asks for CPU=1, GPU=1, accelerator_type:H100" in text
    assert "the cluster offers 1 live node(s): 1 CPU, no GPU" in text
    assert "No available node types" not in text and wall_s < 60  # not the 120 s pending timeout
