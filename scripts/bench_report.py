"""Benchmark: ``python -m orchestrator.report`` on a large synthetic sweep.

    python scripts/bench_report.py [--cells 500] [--requests 1000000] [--repeats 3]
                                   [--out experiments/benchmarks]

Builds a sweep of ``--cells`` cells (real canonical configs of the full grid: 2 models x 5
quantizations x 3 GPUs x 3 workloads x batch sizes 1..64; the cells the grid's feasibility filter
rejects become ``unsupported``/``infeasible`` status rows, the rest are ``ok``) holding
``--requests`` request rows in all and 600 power samples per ok cell, written with the
``orchestrator.store.sweep_store`` APIs into a temporary directory. Metrics are synthetic (a roofline-shaped
throughput, lognormal latencies, a linear power model) and labelled ``engine=simulated`` so the
report never presents them as measurements; every runs-row percentile is computed from that cell's
own request rows, so the report's data checks must agree.

Then it times the report command in a child process ``--repeats`` times (wall clock) and measures
its peak memory two ways: ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (largest single process) and
the process tree's summed RSS sampled every 20 ms (psutil). A library-level breakdown (read,
analyse, figures, render) of one more run follows. Targets: < 10 s and < 2 GB on a 2-core machine.
Writes ``report_scale.md`` and ``report_scale.json`` under ``--out``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_WALL_S = 10.0
TARGET_RSS_MIB = 2048.0
POWER_SAMPLES = 600
AXES = {"model": ["llama2_7b", "mistral_7b"], "quantization": ["none", "awq", "gptq", "int8", "fp8"],
            "gpu": ["t4", "a800", "h100"], "workload": ["chat_medium", "chat_high", "offline"],
            "batch_size": [1, 2, 4, 8, 16, 32, 64]}


def grid_cells():
    """The full grid's cells (typed config, id, pre-launch status), in a fixed order."""
    from orchestrator.driver import grid

    configs = [grid.config_of([f"model={m}", f"quantization={q}", f"gpu={g}", f"workload={w}", f"batch_size={bs}",
                               "engine=simulated", "sampler=nvml"])
               for m, q, g, w, bs in itertools.product(*AXES.values())]
    return grid.cells(configs, {})


def pick_cells(n_cells: int):
    """``n_cells`` cells: every launchable one first (up to n), the rest from the rejected ones."""
    cells = list(grid_cells())
    ok = [c for c in cells if c.status is None]
    bad = [c for c in cells if c.status is not None]
    n_bad = max(n_cells - len(ok), min(len(bad), n_cells // 16))
    return ok[: n_cells - n_bad], bad[:n_bad]


def request_columns(cid: str, cfg, n: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """Synthetic request rows of one ok cell, and the runs-row metrics computed from them."""
    from orchestrator.perf import roofline

    m, q, g, wl, bs = cfg.model, cfg.quantization, cfg.gpu, cfg.workload, cfg.batch_size
    out_tok, in_tok = wl.output.mean_tokens, wl.input.mean_tokens
    ceiling, _ = roofline.decode_ceiling_tok_s(m, q, g, bs, in_tok + out_tok / 2)
    capacity = 0.6 * ceiling
    offline = wl.arrival == "offline"
    demand = float("inf") if offline else wl.rate_rps * out_tok
    tok_s = min(capacity, demand)
    saturated = (not offline) and capacity < 0.95 * demand
    tpot_s = bs / capacity if offline else max(1, min(bs, tok_s / capacity * bs)) / capacity
    warm = 20
    idx = np.arange(n)
    ttft_s = rng.lognormal(np.log(0.05 + 0.002 * bs), 0.3, n) + (idx / n * 30.0 if saturated else 0.0)
    rate = tok_s / out_tok
    arrival = idx / rate
    first = arrival + ttft_s
    end = first + tpot_s * (out_tok - 1) * rng.lognormal(0, 0.05, n)
    ok = np.ones(n, dtype=bool)
    cols = {
        "cell_id": [cid] * n, "request_index": idx, "phase": np.where(idx < warm, "warmup", "measured"),
        "batch_index": idx // bs if offline else np.full(n, -1), "scheduled_arrival_s": arrival, "send_s": arrival,
        "first_token_s": first, "end_s": end, "n_token_times": np.full(n, out_tok), "input_tokens": np.full(n, in_tok),
        "output_tokens": np.full(n, out_tok), "requested_output_tokens": np.full(n, out_tok),
        "ttft_ms": (first - arrival) * 1e3, "tpot_ms": (end - first) / (out_tok - 1) * 1e3,
        "e2e_ms": (end - arrival) * 1e3, "drained": np.zeros(n, dtype=bool), "status": ["ok"] * n, "error": [""] * n,
    }
    meas = ok & (idx >= warm)
    metrics = {"saturated": bool(saturated), "output_throughput_tok_s": tok_s, "request_throughput_rps": rate,
               "n_requests_total": n, "n_requests_measured": int(meas.sum()), "n_requests_ok": int(meas.sum())}
    for name, key in (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("e2e", "e2e_ms"), ("itl", "tpot_ms")):
        vals = cols[key][meas]
        metrics.update({f"{name}_p{p}_ms": float(np.percentile(vals, p)) for p in (50, 90, 99)})
        metrics[f"{name}_mean_ms"] = float(vals.mean())
    return cols, metrics


def energy_columns(cfg, metrics: dict, window_s: float, rng: np.random.Generator) -> tuple[dict, dict]:
    """A linear power model over the window: runs energy columns and power samples."""
    g, bs = cfg.gpu, cfg.batch_size
    mean_w = g.idle_w + (g.tdp_w - g.idle_w) * (0.35 + 0.5 * min(1.0, bs / 64))
    t = np.linspace(-5.0, window_s + 1.0, POWER_SAMPLES)
    in_win = (t >= 0) & (t <= window_s)
    power = np.where(in_win, mean_w, g.idle_w) * rng.normal(1.0, 0.02, t.size)
    energy_j = mean_w * window_s
    done = metrics["request_throughput_rps"] * window_s
    tokens = metrics["output_throughput_tok_s"] * window_s
    net = energy_j - g.idle_w * window_s
    runs = {
        "energy_source": "simulated", "energy_note": "synthetic benchmark data, not measured",
        "energy_j": energy_j, "energy_integrated_j": energy_j * 1.01, "idle_power_w": g.idle_w,
        "baseline_energy_j": g.idle_w * window_s, "net_energy_j": net,
        "energy_per_request_j": energy_j / done, "net_energy_per_request_j": net / done,
        "energy_per_1k_output_tokens_j": energy_j / tokens * 1e3,
        "net_energy_per_1k_output_tokens_j": net / tokens * 1e3,
        "mean_power_w": mean_w, "max_power_w": float(power.max()), "energy_invalid": False,
        "energy_mismatch": bool(rng.random() < 0.03), "short_window": False, "counter_update_period_s": 0.1,
        "gpu_util_mean_pct": min(100.0, 40 + bs), "memory_used_max_mib": None,
    }
    samples = {"t_ns": (t * 1e9).astype(np.int64), "t_rel_s": t, "power_w": power,
               "energy_mj": np.cumsum(power) * (t[1] - t[0]) * 1e3, "util_pct": np.where(in_win, 90.0, 0.0),
               "memory_used_mib": np.full(t.size, np.nan), "sm_clock_mhz": np.full(t.size, 1700.0),
               "temperature_c": np.full(t.size, 60.0), "in_window": in_win}
    return runs, samples


def ok_tables(cell, n: int, rng: np.random.Generator) -> dict:
    from orchestrator.store.cell_tables import config_columns
    from orchestrator.store.schema import columns_table, runs_table

    cid, cfg = cell.cell_id, cell.config
    req, metrics = request_columns(cid, cfg, n, rng)
    window_s = metrics["n_requests_measured"] / metrics["request_throughput_rps"]
    energy, samples = energy_columns(cfg, metrics, window_s, rng)
    row = config_columns(cell, "bench_report")
    row.update(metrics, **energy)
    row.update(status="ok", error="", attempts=1, engine="simulated", engine_reason="benchmark",
               window_start_s=0.0, window_end_s=window_s, window_s=window_s,
               n_requests_failed=0, n_requests_drained=0,
               n_requests_completed_in_window=round(metrics["request_throughput_rps"] * window_s),
               output_tokens_in_window=round(metrics["output_throughput_tok_s"] * window_s),
               offered_rate_rps=cfg.workload.rate_rps if cfg.workload.arrival != "offline" else None,
               total_throughput_tok_s=metrics["output_throughput_tok_s"] * 3,
               output_tokens_per_request_mean=float(cfg.workload.output.mean_tokens),
               input_tokens_per_request_mean=float(cfg.workload.input.mean_tokens),
               token_count_mismatch=False, mean_running_batch=float(cfg.batch_size) * 0.95,
               engine_versions="{}", started_unix_s=time.time(), finished_unix_s=time.time())
    return {"runs": runs_table([row]), "requests": columns_table("requests", req),
            "power": columns_table("power", {"cell_id": [cid] * POWER_SAMPLES, **samples})}


def build_dataset(root: Path, n_cells: int, n_requests: int) -> dict:
    """Write the synthetic sweep under ``root``; return what it holds."""
    from orchestrator.store.cell_tables import status_tables
    from orchestrator.store.sweep_store import Store

    store = Store.open(str(root))
    ok, bad = pick_cells(n_cells)
    rng = np.random.default_rng(0)
    per_cell = np.full(len(ok), n_requests // len(ok))
    per_cell[: n_requests - per_cell.sum()] += 1
    for cell, n in zip(ok, per_cell):
        store.write_cell(cell.cell_id, ok_tables(cell, int(n), rng))
    for cell in bad:
        store.write_cell(cell.cell_id, status_tables(cell, "bench_report", cell.status, cell.reason))
    size = sum(f.stat().st_size for f in root.rglob("*.parquet"))
    return {"cells": len(ok) + len(bad), "ok_cells": len(ok), "status_only_cells": len(bad),
            "request_rows": int(per_cell.sum()), "power_rows": len(ok) * POWER_SAMPLES, "parquet_mib": size / 2**20}


def run_once(sweep: Path, out: Path) -> dict:
    """Time one report in a child process; peak RSS by rusage (max single process) and psutil (tree)."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.report", str(sweep), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tree_peak = 0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            tree_peak = max(tree_peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    _stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"report failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"wall_s": wall, "rusage_maxrss_mib": max(after, before) / 1024, "tree_peak_rss_mib": tree_peak / 2**20,
            "load_avg_1m_before": load}


def breakdown(sweep: Path, out: Path) -> dict:
    """Seconds per phase of one in-process report (library API)."""
    t = time.perf_counter()
    from orchestrator.analysis.dataset import read_sweep
    from orchestrator.report import build, figures
    from orchestrator.report.analyse import analyse
    from orchestrator.report.options import ReportOptions

    phases = {"imports_s": time.perf_counter() - t}
    t = time.perf_counter()
    data = read_sweep(str(sweep))
    phases["read_s"] = time.perf_counter() - t
    t = time.perf_counter()
    a = analyse(data, ReportOptions(str(sweep), out_dir=str(out)))
    phases["analyse_s"] = time.perf_counter() - t
    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    figs = figures.make_figures(a, out)
    phases["figures_s"] = time.perf_counter() - t
    t = time.perf_counter()
    text = build.render(a, figs)
    phases["render_s"] = time.perf_counter() - t
    phases["report_md_kib"] = len(text.encode()) / 1024
    return phases


def _met(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def write_outputs(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report_scale.json").write_text(json.dumps(result, indent=1) + "\n")
    d, s, runs = result["dataset"], result["summary"], result["runs"]
    lines = [
        "# Benchmark: report over a large sweep", "",
        (f"`python scripts/bench_report.py` — {result['date_utc']} on {result['machine']['cpus']} CPUs "
        f"({result['machine']['platform']}, Python {result['machine']['python']})."), "",
        (f"Dataset: {d['cells']} cells ({d['ok_cells']} ok, {d['status_only_cells']} unsupported/infeasible "
        "status rows), "
        f"{d['request_rows']:,} request rows, {d['power_rows']:,} power rows, {d['parquet_mib']:.1f} MiB of Parquet "
        f"(built in {result['build_s']:.1f} s with the orchestrator.store.sweep_store APIs)."), "",
        f"Command: `python -m orchestrator.report <sweep> --out <dir>`, {len(runs)} runs.", "",
        "| run | wall (s) | peak RSS, largest process (MiB) | peak RSS, process tree (MiB) | load avg before |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs, 1):
        lines.append(f"| {i} | {r['wall_s']:.2f} | {r['rusage_maxrss_mib']:.0f} | {r['tree_peak_rss_mib']:.0f} | "
                     f"{r['load_avg_1m_before']:.2f} |")
    lines += ["", (f"Median wall time **{s['median_wall_s']:.2f} s** (min {s['min_wall_s']:.2f} s; target < "
              f"{TARGET_WALL_S:.0f} s: {_met(s['wall_target_met'])}); peak memory **{s['max_rss_mib']:.0f} MiB** "
              f"(target < {TARGET_RSS_MIB:.0f} MiB: {_met(s['rss_target_met'])})."), "",
              "Where the time goes (one more run, in process, library API):", "",
              "| phase | seconds |", "|---|---|"]
    lines += [f"| {k[:-2]} | {v:.2f} |" for k, v in result["breakdown"].items() if k.endswith("_s")]
    lines += ["", (f"report.md: {result['breakdown']['report_md_kib']:.0f} KiB. The machine is shared: the load "
              "average before each run is recorded; times on a loaded machine are longer."), ""]
    (out_dir / "report_scale.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=500)
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "benchmarks"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        sweep = Path(tmp) / "sweep"
        t = time.perf_counter()
        dataset = build_dataset(sweep, args.cells, args.requests)
        build_s = time.perf_counter() - t
        print(f"dataset: {dataset} in {build_s:.1f} s", flush=True)
        runs = []
        for i in range(args.repeats):
            runs.append(run_once(sweep, Path(tmp) / f"report_{i}"))
            print(f"run {i + 1}: {runs[-1]}", flush=True)
        parts = breakdown(sweep, Path(tmp) / "report_breakdown")
        print(f"breakdown: {parts}", flush=True)
    walls = [r["wall_s"] for r in runs]
    rss = max(max(r["rusage_maxrss_mib"], r["tree_peak_rss_mib"]) for r in runs)
    result = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "dataset": dataset, "build_s": build_s, "runs": runs, "breakdown": parts,
        "summary": {"median_wall_s": statistics.median(walls), "min_wall_s": min(walls), "max_rss_mib": rss,
                    "wall_target_s": TARGET_WALL_S, "rss_target_mib": TARGET_RSS_MIB,
                    "wall_target_met": statistics.median(walls) < TARGET_WALL_S,
                    "rss_target_met": rss < TARGET_RSS_MIB},
    }
    write_outputs(result, Path(args.out))
    print(json.dumps(result["summary"]))


if __name__ == "__main__":
    main()
