"""The report of a real simulated sweep (smoke, local Ray): every section and plot is there, and
its numbers equal those recomputed here straight from the Parquet files; bad input exits 2.

One sweep for the module. Numbers are compared to the precision the report prints them with
(half a unit of the last digit shown).
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import ROOT, run_orchestrator

SECTIONS = ["## 1. Executive summary", "## 2. Detailed results", "## 3. Energy per batch size", "## 4. Scaling laws",
            "## 5. Roofline", "## 6. VRAM budget", "## 7. Cost and carbon", "## 8. Recommendations", "## 9. Plots",
            "## Appendix A. Cells without measurements", "## Appendix B. Data checks", "## Appendix C. Definitions"]
PNGS = ["throughput_vs_batch.png", "energy_per_token_vs_batch.png", "latency_throughput_pareto.png", "roofline.png",
        "power_timeline.png"]


def report_cmd(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "orchestrator.report", *map(str, args)], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "sweep"
    run_orchestrator(["+sweep=smoke", "name=report_it", f"store.dir={out}", "dispatch.num_cpus=2",
                      "dispatch.progress=false"])
    return out


@pytest.fixture(scope="module")
def report(sweep) -> tuple[str, Path]:
    out = sweep.parent / "report_out"
    proc = report_cmd(sweep, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return (out / "report.md").read_text(), out


@pytest.fixture(scope="module")
def parquet(sweep):
    """The sweep's runs (ok cells) and requests, read here with pyarrow only."""
    runs = pq.read_table(sweep / "runs").to_pandas()
    return runs[runs["status"] == "ok"], pq.read_table(sweep / "requests").to_pandas()


# ------------------------------------------------------------------ markdown parsing helpers


def section(text: str, title: str) -> str:
    start = text.index(title)
    nxt = text.find("\n## ", start + len(title))
    return text[start: nxt if nxt > 0 else len(text)]


def tables(text: str) -> list[list[dict]]:
    """Every Markdown table in ``text`` as a list of {header: cell} rows."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [h.strip() for h in lines[i].strip("|").split(" | ")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split(" | ")]
                rows.append(dict(zip(header, cells)))
                i += 1
            out.append(rows)
        i += 1
    return out


def rows(text: str) -> list[dict]:
    return [r for t in tables(text) for r in t]


def shown(cell: str, expected: float) -> bool:
    """``cell`` (e.g. '2,057', '+348.5%', '13.6×', '0.612') equals ``expected`` to its printed precision."""
    m = re.search(r"[-+]?[\d,]*\.?\d+", cell)
    assert m, f"no number in {cell!r}"
    text = m.group(0).replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return abs(float(text) - expected) <= 0.5 * 10 ** -decimals + 1e-9 * abs(expected)


def by_cell(table_rows: list[dict], cell_id: str) -> dict:
    hits = [r for r in table_rows if r.get("cell") == cell_id[:8]]
    assert len(hits) == 1, f"cell {cell_id[:8]}: {len(hits)} rows"
    return hits[0]


# ------------------------------------------------------------------ the report


def test_every_section_and_plot_is_there(report):
    text, out = report
    for title in SECTIONS:
        assert title in text, title
    assert "Simulated data — not measurements" in text
    for name in PNGS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
        assert f"]({name})" in text
    assert (out / "tables" / "detail.csv").is_file()


def test_detail_numbers_equal_the_parquet(report, parquet):
    text, _ = report
    runs, req = parquet
    detail = rows(section(text, "## 2. Detailed results"))
    for r in runs.itertuples():
        row = by_cell(detail, r.cell_id)
        mine = req[(req["cell_id"] == r.cell_id) & (req["phase"] == "measured") & (req["status"] == "ok")]
        assert shown(row["requests"], len(req[(req["cell_id"] == r.cell_id) & (req["phase"] == "measured")]))
        assert shown(row["output tok/s"], r.output_tokens_in_window / r.window_s)
        assert shown(row["req/s"], r.n_requests_completed_in_window / r.window_s)
        assert shown(row["TTFT p50 (ms)"], np.percentile(mine["ttft_ms"], 50))
        assert shown(row["TTFT p99 (ms)"], np.percentile(mine["ttft_ms"], 99))
        assert shown(row["TPOT p50 (ms)"], np.percentile(mine.loc[mine["output_tokens"] > 1, "tpot_ms"], 50))
        assert shown(row["E2E p99 (ms)"], np.percentile(mine["e2e_ms"], 99))
        base = runs[(runs["workload"] == r.workload) & (runs["batch_size"] == 1)].iloc[0]
        change = (r.output_throughput_tok_s / base.output_throughput_tok_s - 1) * 100
        assert shown(row["Δ tok/s"], change) and row["base BS"] == "1"
        # simulated cells: the simulator's modeled energy never raises W/E/X; saturation (S) stays
        assert set(row["flags"].split()) == ({"S"} if r.saturated else set())


def served(r):
    """The requests' worth of output tokens a window emitted, which J/request divides by
    (``worker.tables.per_unit_energy``)."""
    return r.output_tokens_in_window / r.output_tokens_per_request_mean


def test_energy_numbers_equal_the_parquet(report, parquet):
    text, _ = report
    runs, _ = parquet
    energy = rows(section(text, "## 3. Energy per batch size"))
    for wl, grp in runs.groupby("workload"):
        base = grp[grp["batch_size"] == 1].iloc[0]
        base_j = base.energy_j / served(base)
        table = [r for r in energy if r["BS"] in {str(b) for b in grp["batch_size"]}]
        for r in grp.itertuples():
            j_req = r.energy_j / served(r)
            hits = [x for x in table if x["BS"] == str(r.batch_size) and shown(x["J/request gross"], j_req)]
            assert len(hits) == 1, (wl, r.batch_size)
            row = hits[0]
            assert shown(row["J/request net"], r.net_energy_j / served(r))
            assert shown(row["J/1k tok gross"], r.energy_j / r.output_tokens_in_window * 1000)
            assert shown(row["Δ energy gross"], (j_req / base_j - 1) * 100)
            assert shown(row["throughput scaling"], r.output_throughput_tok_s / base.output_throughput_tok_s)


def test_fits_cost_and_summary_equal_the_parquet(report, parquet):
    text, _ = report
    runs, _ = parquet
    fits = tables(section(text, "## 4. Scaling laws"))[0]  # J/request ≈ C / BS^α
    costs = rows(section(text, "## 7. Cost and carbon"))
    summary = rows(section(text, "## 1. Executive summary"))
    for wl, grp in runs.groupby("workload"):
        j_req = grp["energy_j"] / served(grp)
        slope, intercept = np.polyfit(np.log(grp["batch_size"]), np.log(j_req), 1)
        fit = next(r for r in fits if r["workload"] == wl)
        assert shown(fit["α"], -slope) and shown(fit["C"], math.exp(intercept))
        for j in j_req:
            assert any(shown(c["kWh/month gross"], j * 1e6 / 3.6e6) for c in costs)
        best = grp.loc[grp["output_throughput_tok_s"].idxmax()]
        starts = [r for r in summary if r["metric"] == "batch size [flags]"]
        assert any(r["best throughput"].split()[0] == str(best.batch_size) for r in starts)
        assert any(shown(r["best throughput"], best.output_throughput_tok_s) for r in summary
                   if r["metric"] == "output tok/s")


def test_simulated_rows_are_marked_in_every_table(report, sweep):
    """† on every row of every table with a series or model column (recommendations and cost
    included), with the legend; modeled energy is shown but never counted as measured."""
    from orchestrator.analysis.dataset import read_sweep

    text, out = report
    marked = 0
    for table in tables(text):
        label = next((h for h in ("series", "model/quant", "model") if h in table[0]), None)
        if label is None:
            continue
        cells = [r[label] for r in table if r[label]]  # the summary names a series once per block
        assert cells and all(c.endswith(" †") for c in cells), (label, cells[:3])
        marked += 1
    assert marked >= 12
    for title in ("## 7. Cost and carbon", "## 8. Recommendations"):
        part = section(text, title)
        assert rows(part) and all(r["series"].endswith(" †") for r in rows(part))
        assert "† simulated: modeled by the simulated engine's roofline model" in part
    assert "- **†** — simulated" in text
    data = read_sweep(str(sweep))
    assert not data.runs["energy_measured"].any() and data.ok["energy_available"].all()
    energy = pd.read_csv(out / "tables" / "energy.csv")
    assert energy["simulated"].all() and energy["energy_per_request_j"].notna().all()
    assert not any("E" in r.get("flags", "").split() for r in rows(text))


def test_flag_counts_vram_roofline_and_checks(report, parquet):
    text, _ = report
    runs, _ = parquet
    flagged = int((runs["saturated"] | runs["energy_mismatch"] | runs["short_window"] | runs["token_count_mismatch"]
                   | runs["energy_invalid"]).sum())
    saturated = int(runs["saturated"].sum())
    assert f"**Flags.** {flagged} of {len(runs)} ok cells are flagged: {saturated} saturated (S)" in text
    vram = tables(section(text, "## 6. VRAM budget"))[0]
    kv = {r["context tok"]: r["KV/request GiB"] for r in vram}
    assert kv == {"256": f"{2 * 32 * 4096 * 2 * 256 / 2**30:.4f}", "384": f"{2 * 32 * 4096 * 2 * 384 / 2**30:.4f}"}
    roofs = tables(section(text, "## 5. Roofline"))[0]
    assert shown(roofs[0]["ridge point (FLOP/byte)"], 989e12 / 3350e9)
    assert f"{len(runs)} of {len(runs)} cells agree" in text
    assert "Every cell of the sweep finished ok." in text


def test_unmeasured_energy_is_said_not_shown_and_compare(sweep, tmp_path):
    """A copy of the sweep whose cells have no energy (energy_source=none): the report says so.
    Drawn with --jobs 2 (plot worker processes); then compared with the original."""
    copy = tmp_path / "no_energy"
    shutil.copytree(sweep, copy)
    nulls = ["energy_j", "energy_integrated_j", "baseline_energy_j", "net_energy_j", "energy_per_request_j",
             "net_energy_per_request_j", "energy_per_1k_output_tokens_j", "net_energy_per_1k_output_tokens_j",
             "mean_power_w", "max_power_w"]
    for f in (copy / "runs").glob("*.parquet"):
        t = pq.read_table(f)
        for name in nulls:
            t = t.set_column(t.schema.get_field_index(name), name, pa.nulls(t.num_rows, pa.float64()))
        for name, value in (("energy_source", "none"), ("energy_note", "sampler=none")):
            t = t.set_column(t.schema.get_field_index(name), name, pa.array([value] * t.num_rows))
        pq.write_table(t, f)
    for f in (copy / "power").glob("*.parquet"):
        f.unlink()
    proc = report_cmd(copy, "--out", tmp_path / "r", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "**Energy was not measured** for 6 of 6 ok cells" in text
    assert "Energy was not measured for these cells (energy_source=none: sampler=none)" in text
    assert "Energy was not measured in this sweep: no cost or carbon figures." in text
    assert not (tmp_path / "r" / "energy_per_token_vs_batch.png").exists()
    assert (tmp_path / "r" / "throughput_vs_batch.png").is_file()

    cmp = report_cmd("compare", sweep, copy, "--out", tmp_path / "c")
    assert cmp.returncode == 0, cmp.stderr
    ctext = (tmp_path / "c" / "compare.md").read_text()
    assert "Both sweeps ran the same grid" in ctext and "6 matched points" in ctext
    assert "output tok/s: no_energy vs sweep median +0.0%" in ctext
    assert (tmp_path / "c" / "compare.png").is_file()


# ------------------------------------------------------------------ bad input


def assert_one_line_error(proc, needle: str):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr


def test_a_directory_with_no_sweep(tmp_path):
    assert_one_line_error(report_cmd(tmp_path), "no sweep here")
    (tmp_path / "runs").mkdir()
    assert_one_line_error(report_cmd(tmp_path), "no complete cell")


def test_a_sweep_with_only_failed_cells(tmp_path):
    out = tmp_path / "infeasible"  # fp16 Llama-2-7B does not fit a T4: the cell is never launched
    run_orchestrator(["model=llama2_7b", "gpu=t4", "batch_size=64", f"store.dir={out}"])
    assert_one_line_error(report_cmd(out), "no cell finished ok (1 infeasible)")


def test_a_missing_baseline_batch_size_and_unknown_power_cell(sweep, tmp_path):
    assert_one_line_error(report_cmd(sweep, "--out", tmp_path, "--baseline-batch", "3"),
                          "baseline batch size 3 is not in the sweep's ok cells (they ran batch sizes 1, 4, 16)")
    assert_one_line_error(report_cmd(sweep, "--out", tmp_path, "--power-cell", "zzzz"), "--power-cell zzzz")


STUDY = ROOT / "experiments" / "h200_study"


def test_prediction_error_on_the_committed_study(tmp_path):
    """The study's measured store against its calibrated prediction: the held-out and fitted errors
    equal the per-point changes of compare.csv (recomputed here), the fitted points are exactly the
    fp16 offline scan of the calibration, and a file that is not a calibration is one error line."""
    cal = STUDY / "calibration" / "calibration.json"
    proc = report_cmd("compare", STUDY / "store", STUDY / "sim_store", "--out", tmp_path, "--fitted-on", cal)
    assert proc.returncode == 0, proc.stderr
    points = pd.read_csv(tmp_path / "compare.csv")
    errors = pd.read_csv(tmp_path / "prediction_errors.csv").set_index("group")
    fitted = (points.quantization == "none") & (points.workload == "offline") & (points.model == "llama2_7b")
    assert errors.loc["all fitted", "points"] == fitted.sum() == 9
    assert errors.loc["all held out", "points"] == (~fitted).sum() > 0
    for name, part in (("all fitted", points[fitted]), ("all held out", points[~fitted])):
        for m in ("output_throughput_tok_s", "energy_per_output_token_j"):
            err = (part[f"{m}_b"] / part[f"{m}_a"] - 1).abs() * 100
            assert errors.loc[name, f"{m}_median_abs_error_pct"] == pytest.approx(err.median())
            assert errors.loc[name, f"{m}_max_abs_error_pct"] == pytest.approx(err.max())
    text = (tmp_path / "compare.md").read_text()
    assert "## Prediction error: held out and fitted" in text and "| all held out | yes |" in text
    (tmp_path / "bad.json").write_text('{"options": {}}')
    assert_one_line_error(report_cmd("compare", STUDY / "store", STUDY / "sim_store", "--out", tmp_path,
                                     "--fitted-on", tmp_path / "bad.json"), "not a calibration.json")


def test_the_committed_study_report_regenerates_identically(tmp_path):
    """Issue 13's check: the study's report and its prediction comparison, regenerated from the
    committed Parquet with this code, equal the committed files byte for byte (markdown, every
    table's CSV, the HTML page). A change to either that is not committed with it fails here."""
    rel = STUDY.relative_to(ROOT)  # the report names the store as given; the committed one was made from ROOT
    proc = report_cmd(rel / "store", "--out", tmp_path / "report")
    assert proc.returncode == 0, proc.stderr
    committed = STUDY / "report"
    names = ["report.md", "report.html"] + [f"tables/{p.name}" for p in sorted((committed / "tables").glob("*.csv"))]
    assert sorted(p.name for p in (tmp_path / "report" / "tables").glob("*.csv")) == \
        sorted(p.name for p in (committed / "tables").glob("*.csv"))
    for name in names:
        assert (tmp_path / "report" / name).read_bytes() == (committed / name).read_bytes(), name
    proc = report_cmd("compare", rel / "store", rel / "sim_store", "--out", tmp_path / "prediction",
                      "--fitted-on", rel / "calibration" / "calibration.json")
    assert proc.returncode == 0, proc.stderr
    for name in ("compare.md", "compare.csv", "prediction_errors.csv"):
        assert (tmp_path / "prediction" / name).read_bytes() == (STUDY / "prediction" / name).read_bytes(), name


def test_a_window_without_ok_requests_is_a_failed_cell_and_the_report_reads_the_rest(tmp_path):
    """Issue 27: an overloaded chat cell whose measured requests were all cancelled at the drain
    limit ended ``ok`` with no latency, and the report on its store crashed (all-NA values). It is
    now an ``engine_error`` cell (exit 3, its reason on the console) and the report is written
    from the other cell, naming the failure."""
    out = tmp_path / "overloaded"
    proc = run_orchestrator(["-m", "batch_size=1,64", "engine=simulated", "model=llama2_7b", "gpu=h100",
                             "workload=chat_high", "workload.duration_s=5", f"store.dir={out}",
                             "dispatch.num_cpus=2"], check=False, timeout=180)
    done = [line for line in proc.stdout.splitlines() if line.startswith("sweep done: ")]
    assert proc.returncode == 3 and done and sorted(done[0][12:].split(", ")) == ["1 engine_error", "1 ok"], proc.stdout
    assert "no measured request completed ok: 219 of 219 cancelled at the drain limit" in proc.stdout
    rep = report_cmd(out, "--out", tmp_path / "report")
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "engine_error" in text and "no measured request completed ok" in text
