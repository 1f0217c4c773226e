"""The report of a real simulated sweep with repeats=3 at batch sizes 4 and 16 only (no BS 1):
repeatability intervals recomputed here from the Parquet files, baselines at each series'
smallest batch, significance in ``compare``, and simulated cells that never pass for measured.

One sweep for the module (12 cells, smoke workloads); variants are copies of it edited with
pyarrow, as ``test_report`` does.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from tests.conftest import run_orchestrator
from tests.integration.test_report import assert_one_line_error, report_cmd, rows, section, shown, tables

PER_TOKEN = {  # repeat metric -> its value from a runs row's raw columns
    "output_throughput_tok_s": lambda r: r["output_tokens_in_window"] / r["window_s"],
    "energy_per_output_token_j": lambda r: r["energy_j"] / r["output_tokens_in_window"],
    "net_energy_per_output_token_j": lambda r: r["net_energy_j"] / r["output_tokens_in_window"],
    "ttft_p50_ms": lambda r: r["ttft_p50_ms"],
    "tpot_p50_ms": lambda r: r["tpot_p50_ms"],
}
HEADERS = {"output_throughput_tok_s": "output tok/s", "energy_per_output_token_j": "J/output token gross",
           "net_energy_per_output_token_j": "J/output token net", "ttft_p50_ms": "TTFT p50 (ms)",
           "tpot_p50_ms": "TPOT p50 (ms)"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repeats") / "sweep"
    run_orchestrator(["+sweep=smoke", "name=repeats_it", "repeats=3", "batch_size=4,16", f"store.dir={out}",
                      "dispatch.num_cpus=2", "dispatch.progress=false"])
    return out


@pytest.fixture(scope="module")
def report(sweep) -> tuple[str, Path]:
    out = sweep.parent / "report_out"
    proc = report_cmd(sweep, "--out", out)  # no --baseline-batch, and the sweep has no BS 1
    assert proc.returncode == 0, proc.stderr
    return (out / "report.md").read_text(), out


@pytest.fixture(scope="module")
def runs(sweep) -> pd.DataFrame:
    df = pq.read_table(sweep / "runs").to_pandas()
    assert (df["status"] == "ok").all() and len(df) == 12
    return df


def edit_copy(sweep: Path, dest: Path, columns: dict | None = None, drop_repeats_above: int | None = None) -> Path:
    """A copy of the sweep with runs columns set to constants, or without the cells whose repeat
    is above ``drop_repeats_above`` (all three tables)."""
    shutil.copytree(sweep, dest)
    for f in (dest / "runs").glob("*.parquet"):
        t = pq.read_table(f)
        if drop_repeats_above is not None and t.column("repeat")[0].as_py() > drop_repeats_above:
            for table in ("runs", "requests", "power"):
                (dest / table / f.name).unlink(missing_ok=True)
            continue
        for name, value in (columns or {}).items():
            t = t.set_column(t.schema.get_field_index(name), name, pa.array([value] * t.num_rows))
        pq.write_table(t, f)
    return dest


def expected_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean, Student-t 95% half-width and CV, straight from the textbook formulas."""
    n, mean, s = len(values), float(np.mean(values)), float(np.std(values, ddof=1))
    return mean, stats.t.ppf(0.975, n - 1) * s / math.sqrt(n), s / mean


# ------------------------------------------------------------------ repeatability


def test_repeatability_is_the_student_t_interval_of_the_repeats(report, runs):
    text, out = report
    csv = pd.read_csv(out / "tables" / "repeatability.csv")
    part = section(text, "## 2. Detailed results")
    assert "### Repeatability" in part and "Each point holds 3 ok repeats" in part
    assert "**Student-t 95% confidence interval**" in part
    shown_rows = rows(part[part.index("### Repeatability"):])
    spread = 0
    for (wl, bs), grp in runs.groupby(["workload", "batch_size"]):
        assert sorted(grp["repeat"]) == [0, 1, 2]
        row = csv[(csv["workload"] == wl) & (csv["batch_size"] == bs)].iloc[0]
        md = next(r for r in shown_rows if r["BS"] == str(bs) and r["repeats"] == "3"
                  and shown(r["output tok/s mean ± 95% CI"], row["output_throughput_tok_s_mean"]))
        assert row["n_repeats"] == 3 and md["series"].endswith(" †")
        for metric, value in PER_TOKEN.items():
            mean, half, cv = expected_interval(np.array([value(r) for _, r in grp.iterrows()]))
            assert row[f"{metric}_mean"] == pytest.approx(mean, rel=1e-9)
            assert row[f"{metric}_ci95_half_width"] == pytest.approx(half, rel=1e-6, abs=1e-12)
            assert row[f"{metric}_ci95_low"] == pytest.approx(mean - half, rel=1e-9)
            assert row[f"{metric}_ci95_high"] == pytest.approx(mean + half, rel=1e-9)
            assert row[f"{metric}_cv"] == pytest.approx(cv, rel=1e-6, abs=1e-12)
            mean_text, half_text = md[f"{HEADERS[metric]} mean ± 95% CI"].split(" ± ")
            assert shown(mean_text, mean) and shown(half_text, half)
            assert shown(md[f"{HEADERS[metric]} CV"], cv * 100)
            spread += half > 0
    assert spread >= 5  # Poisson arrivals differ between repeats: real intervals, not all zero


def test_one_repeat_has_no_interval_and_compare_says_unknown(sweep, runs, tmp_path):
    single = edit_copy(sweep, tmp_path / "single", drop_repeats_above=0)
    proc = report_cmd(single, "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Every point ran once (repeats=1): there is no confidence interval" in text
    csv = pd.read_csv(tmp_path / "r" / "tables" / "repeatability.csv")
    assert (csv["n_repeats"] == 1).all()
    stat_cols = [c for c in csv.columns if c.endswith(("_ci95_low", "_ci95_high", "_ci95_half_width", "_cv"))]
    assert len(stat_cols) == 20 and csv[stat_cols].isna().all().all()  # NaN, never 0

    cmp = report_cmd("compare", sweep, single, "--out", tmp_path / "c")
    assert cmp.returncode == 0, cmp.stderr
    ctext = (tmp_path / "c" / "compare.md").read_text()
    assert "? at least one side ran a single repeat" in ctext
    deltas = [r["Δ"] for r in rows(ctext)]
    assert deltas and all(d.endswith(" ?") for d in deltas)
    table = pd.read_csv(tmp_path / "c" / "compare.csv")
    assert table["significant_output_throughput_tok_s"].isna().all()
    for part in ctext.split("\n## ")[1:]:  # per workload: sentences, then the table
        sentences = part.split("\n\n")[1]
        assert sentences.count("; 2 unknown)") == 5 and "significant" not in sentences


def test_overlapping_intervals_are_not_significant(sweep, tmp_path):
    copy = tmp_path / "again"
    shutil.copytree(sweep, copy)
    cmp = report_cmd("compare", sweep, copy, "--out", tmp_path / "c")
    assert cmp.returncode == 0, cmp.stderr
    text = (tmp_path / "c" / "compare.md").read_text()
    assert "n.s. they overlap (not significant)" in text
    assert "output tok/s: again vs sweep median +0.0% (+0.0% to +0.0%; 2 not significant)" in text
    matched = rows(text)
    assert len(matched) == 4 and all(r["repeats A / B"] == "3 / 3" for r in matched)
    assert all(r["Δ"] == "+0.0% n.s." for r in matched)
    table = pd.read_csv(tmp_path / "c" / "compare.csv")
    for metric in PER_TOKEN:
        assert table[f"significant_{metric}"].eq(False).all(), metric


# ------------------------------------------------------------------ baselines


def test_default_baseline_is_each_series_smallest_batch(report, runs):
    text, out = report
    assert "Baseline: **each series' smallest batch (BS 4)**" in text
    assert "Δ columns: change relative to each series' smallest batch (BS 4)" in text
    energy = pd.read_csv(out / "tables" / "energy.csv")
    detail = pd.read_csv(out / "tables" / "detail.csv")
    cost = pd.read_csv(out / "tables" / "cost.csv")
    for frame in (energy, detail, cost):
        assert (frame["baseline_batch_size"] == 4).all()
    at4 = energy[energy["batch_size"] == 4]
    assert len(at4) == 2 and (at4["throughput_scaling_x"] == 1.0).all()
    assert (at4["change_energy_per_request_j_pct"] == 0.0).all()
    assert (detail.loc[detail["batch_size"] == 4, "change_output_throughput_tok_s_pct"] == 0.0).all()
    assert (cost.loc[cost["batch_size"] == 4, "saving_pct"] == 0.0).all()
    for wl, grp in runs.groupby("workload"):
        tok = grp.groupby("batch_size")["output_throughput_tok_s"].mean()
        row16 = energy[(energy["workload"] == wl) & (energy["batch_size"] == 16)].iloc[0]
        assert row16["throughput_scaling_x"] == pytest.approx(tok[16] / tok[4], rel=1e-9)
    shown_rows = rows(section(text, "## 3. Energy per batch size"))
    assert [r["throughput scaling"] for r in shown_rows if r["BS"] == "4"] == ["1.00×", "1.00×"]
    assert all(r["base BS"] == "4" for r in shown_rows)


def test_an_explicit_baseline_batch(sweep, tmp_path):
    proc = report_cmd(sweep, "--out", tmp_path / "r", "--baseline-batch", "16", "--no-csv")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Baseline: **BS 16 of the same series (--baseline-batch 16)**" in text
    energy = rows(section(text, "## 3. Energy per batch size"))
    assert [r["throughput scaling"] for r in energy if r["BS"] == "16"] == ["1.00×", "1.00×"]
    assert_one_line_error(report_cmd(sweep, "--out", tmp_path / "x", "--baseline-batch", "8"),
                          "baseline batch size 8 is not in the sweep's ok cells (they ran batch sizes 4, 16)")


def test_a_series_without_the_explicit_baseline_batch(sweep, runs, tmp_path):
    """Offline never ran BS 16 here: with --baseline-batch 16 its changes are empty and the report
    names it; chat_medium is still compared with its BS 16."""
    copy = tmp_path / "partial"
    shutil.copytree(sweep, copy)
    for cid in runs.loc[(runs["workload"] == "offline") & (runs["batch_size"] == 16), "cell_id"]:
        for table in ("runs", "requests", "power"):
            (copy / table / f"{cid}.parquet").unlink(missing_ok=True)
    proc = report_cmd(copy, "--out", tmp_path / "r", "--baseline-batch", "16")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "1 series did not run BS 16, so their change columns are empty: llama2_7b/none/h100 · offline." in text
    assert "No series of this workload ran BS 16: nothing to compare against." in text
    energy = pd.read_csv(tmp_path / "r" / "tables" / "energy.csv")
    offline = energy[energy["workload"] == "offline"]
    assert offline["baseline_batch_size"].isna().all() and offline["throughput_scaling_x"].isna().all()
    chat = energy[energy["workload"] == "chat_medium"].set_index("batch_size")
    assert chat.loc[16, "throughput_scaling_x"] == 1.0 and (chat["baseline_batch_size"] == 16).all()


# ------------------------------------------------------------------ simulated is never measured


def test_the_simulators_energy_flags_never_show(sweep, runs, tmp_path):
    """Even where the stored rows raise short window and energy mismatch, a simulated cell shows
    neither W nor E; its S stays, and its modeled energy is shown († ), never as measured."""
    flagged = edit_copy(sweep, tmp_path / "flagged", {"energy_mismatch": True, "short_window": True})
    proc = report_cmd(flagged, "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    n_sat = int(runs["saturated"].sum())
    assert n_sat > 0
    assert f"{n_sat} saturated (S), 0 short window (W), 0 energy mismatch (E)" in text
    codes = [set(r["flags"].split()) for r in rows(text) if "flags" in r]
    assert codes and all(c <= {"S"} for c in codes) and any(c == {"S"} for c in codes)
    from orchestrator.analysis.dataset import read_sweep

    data = read_sweep(str(flagged))
    assert not data.runs["energy_measured"].any() and data.runs["energy_available"].all()
    assert not data.runs["energy_mismatch"].any() and set(data.runs["flags"]) <= {"", "S"}
    for title in ("## 7. Cost and carbon", "## 8. Recommendations"):
        assert all(r["series"].endswith(" †") for r in rows(section(text, title)))
    assert len(tables(section(text, "## 7. Cost and carbon"))) == 2
