"""Issue 31: the report of a real active sweep (``sweep.strategy=active`` on the simulator, local
Ray) answers over the whole grid with each number's source. Its section "The whole grid: measured
and predicted" has one row per cell of ``active_sweep.json``: measured values equal the runs rows,
predicted ones carry † and their 90% interval; the page has the same table and draws the
predictions as hollow markers with error bars. Predictions enter nothing else: report.md, every
other CSV and the page's other data equal those of the same store without the record, which has
no such section."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from orchestrator.analysis.dataset import read_sweep
from orchestrator.analysis.whole_grid import METRICS, RECORD, read_whole_grid, whole_grid
from orchestrator.report import whole_grid as report_whole_grid
from tests.conftest import run_orchestrator
from tests.integration.test_report import report_cmd, section, shown, tables
from tests.integration.test_report_full_grid_html import page_data
from tests.integration.test_report_html import browser, open_page  # noqa: F401 (a fixture)

GRID = ["-m", "batch_size=1,2,4,8,16,32,64", "quantization=none,fp8", "workload=offline", "engine=simulated",
        "gpu=h100", "sweep.strategy=active", "sweep.budget=0.3", "dispatch.num_cpus=2", "dispatch.progress=false"]
N = 14
TITLE = "## The whole grid: measured and predicted"
PAGE_TABLE = "whole grid: measured and predicted"
PREDICTED = re.compile(r"^(\S+) † \[(\S+)–(\S+)\]$")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole_grid") / "active"
    run_orchestrator([*GRID, f"store.dir={out}"])
    return out


@pytest.fixture(scope="module")
def record(store) -> dict:
    return json.loads((store / RECORD).read_text())


@pytest.fixture(scope="module")
def runs(store) -> pd.DataFrame:
    return pq.read_table(store / "runs").to_pandas().set_index("cell_id")


@pytest.fixture(scope="module")
def reports(store) -> tuple[Path, Path]:
    """The report of the store, and that of a copy of it without ``active_sweep.json``."""
    plain = store.parent / "plain"
    shutil.copytree(store, plain)
    (plain / RECORD).unlink()
    for where, out in ((store, store.parent / "report"), (plain, store.parent / "report_plain")):
        proc = report_cmd(where, "--out", out)
        assert proc.returncode == 0, proc.stderr
    return store.parent / "report", store.parent / "report_plain"


def grid_rows(md: str) -> list[dict]:
    found = tables(section(md, TITLE))
    assert len(found) == 1
    return found[0]


def test_the_record_is_the_active_sweeps(record):
    from orchestrator.search import active_sweep

    assert RECORD == active_sweep.RECORD and METRICS == active_sweep.METRICS
    assert len(record["cells"]) == N and record["stopped"] == "the budget is spent"
    assert {c["source"] for c in record["cells"]} == {"measured", "predicted"}


def test_one_row_per_cell_measured_plain_predicted_with_dagger_and_interval(reports, record, runs):
    md = (reports[0] / "report.md").read_text()
    rows = grid_rows(md)
    cells = {c["cell_id"][:8]: c for c in record["cells"]}
    assert len(rows) == N and {r["cell"] for r in rows} == set(cells)
    for r in rows:
        c = cells[r["cell"]]
        model, quant, gpu, bs, workload, _ = c["label"].split("/")
        assert (r["model"], r["quantization"], r["GPU"], "bs" + r["BS"], r["workload"]) == (model, quant, gpu, bs, workload)
        values = {"output tok/s": METRICS[0], "J/output token": METRICS[1]}
        if c["source"] == "measured":
            assert r["source"] == "measured"
            row = runs.loc[c["cell_id"]]
            measured = {METRICS[0]: row["output_throughput_tok_s"], METRICS[1]: row["energy_per_1k_output_tokens_j"] / 1000}
            for header, m in values.items():
                assert "†" not in r[header] and "[" not in r[header]
                assert shown(r[header], measured[m]), (r, m)
        else:
            assert r["source"] == f"predicted ({c['level']})"
            for header, m in values.items():
                hit = PREDICTED.match(r[header])
                assert hit, r[header]
                for text, key in zip(hit.groups(), (m, f"{m}_low", f"{m}_high")):
                    assert shown(text, c["values"][key]), (text, key, c["values"][key])
    # the lead: what was measured of how many, in how many rounds, why it stopped, how wide the intervals are
    lead = section(md, TITLE).split("\n|")[0]
    n_measured = sum(c["source"] == "measured" for c in record["cells"])
    assert f"measured **{n_measured} of the {N} launchable cells**" in lead
    assert f"in {len(record['rounds'])} rounds, and stopped because the budget is spent" in lead
    assert "orchestrator/active/predictor.py" in lead and "90% prediction interval" in lead
    half = re.search(r"±(\S+)% for output tok/s and ±(\S+)% for J per output token", lead)
    for text, m in zip(half.groups(), METRICS):
        widths = [(c["values"][f"{m}_high"] - c["values"][f"{m}_low"]) / 2 / c["values"][m] * 100
                  for c in record["cells"] if c["source"] == "predicted"]
        assert shown(text, float(pd.Series(widths).median()))
    # the key answer over the whole grid names the least J per output token and its source
    best = min((c for c in record["cells"] if c["source"] != "failed"), key=lambda c: c["values"][METRICS[1]])
    answer = next(line for line in md.split("## Key answers")[1].splitlines()
                  if line.startswith("- Least J per output token over the whole grid"))
    model, quant, gpu, bs, _, _ = best["label"].split("/")
    assert f"**{model}/{quant}/{gpu}** (offline) at BS {bs[2:]}" in answer
    assert ("predicted — not measured" in answer and "†" in answer) if best["source"] == "predicted" \
        else answer.endswith("measured.")
    assert shown(answer.split(f"BS {bs[2:]}: ")[1], best["values"][METRICS[1]] * 1000)
    csv = pd.read_csv(reports[0] / "tables" / "whole_grid.csv")
    assert set(csv["cell_id"]) == {c["cell_id"] for c in record["cells"]}
    for c in record["cells"]:
        row = csv[csv["cell_id"] == c["cell_id"]].iloc[0]
        assert row["source"] == c["source"]
        if c["source"] == "predicted":
            assert all(row[k] == pytest.approx(v) for k, v in c["values"].items())


def _without_whole_grid(md: str) -> str:
    """report.md less what the whole grid adds: its section, its key answer, its contents entry."""
    start = md.index(TITLE)
    md = md[:start] + md[md.index("\n## ", start) + 1:]
    md = re.sub(r"\*\*The whole grid\*\* [^\n]*\n\n- Least J per output token over the whole grid[^\n]*\n\n", "", md)
    return md.replace("Contents: The whole grid: measured and predicted · ", "Contents: ")


def test_predictions_enter_no_other_table_fit_or_answer(store, reports, record):
    """Everything else equals the report of the same store without the record, byte for byte."""
    with_record, plain = reports
    md, md_plain = (with_record / "report.md").read_text(), (plain / "report.md").read_text()
    assert _without_whole_grid(md) == md_plain.replace(str(store.parent / "plain"), str(store))
    csvs = sorted(p.name for p in (with_record / "tables").glob("*.csv"))
    assert sorted(p.name for p in (plain / "tables").glob("*.csv")) + ["whole_grid.csv"] == sorted(csvs)
    for name in csvs:
        if name != "whole_grid.csv":
            assert (with_record / "tables" / name).read_bytes() == (plain / "tables" / name).read_bytes(), name
    predicted = [c["cell_id"] for c in record["cells"] if c["source"] == "predicted"]
    rest = _without_whole_grid(md)
    assert not any(cid[:8] in rest for cid in predicted)
    data, data_plain = page_data(with_record / "report.html"), page_data(plain / "report.html")
    assert {r[-1] for r in data["tables"].pop(PAGE_TABLE)["rows"]} == {c["cell_id"] for c in record["cells"]}
    assert sorted(data.pop("whole_grid")["cell_id"]) == sorted(predicted)
    answers = data.pop("answers")
    assert answers[0]["lead"].startswith("**The whole grid**") and answers[1:] == data_plain.pop("answers")
    assert data.pop("path") == str(store) and data_plain.pop("path") == str(store.parent / "plain")
    assert data == data_plain


def test_the_page_has_the_table_and_draws_predictions_hollow_with_intervals(reports, record, runs, browser):  # noqa: F811
    data = page_data(reports[0] / "report.html")
    table = data["tables"][PAGE_TABLE]
    assert next(iter(data["tables"])) == PAGE_TABLE and len(table["rows"]) == N
    cells = {c["cell_id"]: c for c in record["cells"]}
    for row in table["rows"]:
        r = dict(zip(table["columns"], row))
        c = cells[r["cell_id"]]
        for m in METRICS:
            if c["source"] == "predicted":
                assert r["source"] == f"predicted ({c['level']})"
                for k in (m, f"{m}_low", f"{m}_high"):
                    assert r[k] == pytest.approx(c["values"][k], rel=1e-3)
            else:
                assert r["source"] == "measured" and r[f"{m}_low"] is None
                row_value = runs.loc[c["cell_id"], "output_throughput_tok_s"] if m == METRICS[0] else \
                    runs.loc[c["cell_id"], "energy_per_1k_output_tokens_j"] / 1000
                assert r[m] == pytest.approx(row_value, rel=1e-3)
    page, errors = open_page(browser, reports[0] / "report.html")
    page.wait_for_function("window.reportAllDrawn === true", timeout=60_000)
    assert page.locator(f"section[data-table='{PAGE_TABLE}'] tbody tr").count() == N
    n_predicted = sum(c["source"] == "predicted" for c in record["cells"])
    for chart in ("chart-throughput", "chart-energy"):
        traces = page.evaluate(f"document.getElementById('{chart}').data.map(t => ({{name: t.name, "
                               "symbol: t.marker && t.marker.symbol, n: t.x.length, bars: !!(t.error_y && t.error_y.visible), "
                               "legend: t.showlegend, mode: t.mode}))")
        hollow = [t for t in traces if str(t["symbol"]).endswith("-open")]
        assert hollow and all(t["bars"] and t["mode"] == "markers" and t["name"].endswith("(predicted)")
                              and t["legend"] is False for t in hollow)
        assert sum(t["n"] for t in hollow) == n_predicted
        assert not any(str(t["symbol"]).endswith("-open") for t in traces if t not in hollow)
    assert page.evaluate("document.getElementById('chart-ttft').data.every(t => !String(t.marker && t.marker.symbol).endsWith('-open'))")
    assert errors == []
    page.close()


def test_a_store_without_the_record_has_no_such_section(reports):
    plain = reports[1]
    md = (plain / "report.md").read_text()
    assert TITLE not in md and "whole grid" not in md and "†" in md  # (simulated rows are still marked)
    assert not (plain / "tables" / "whole_grid.csv").exists()
    html = (plain / "report.html").read_text()
    data = page_data(plain / "report.html")
    assert "whole_grid" not in data and PAGE_TABLE not in data["tables"] and "PREDICTED_METRICS" not in html


def test_a_failed_cell_is_marked_and_a_row_outranks_a_stale_record(store, record):
    """A cell whose row failed shows no value; a cell the record still predicted (a round cut
    short: its rows written after the record) is measured, with its row's values."""
    data = read_sweep(str(store))
    predicted = [c for c in record["cells"] if c["source"] == "predicted"]
    failed_id, stale_id = predicted[0]["cell_id"], predicted[1]["cell_id"]
    ok = data.runs[data.runs["status"] == "ok"]
    extra = ok.iloc[[0, 0]].copy()
    extra["cell_id"] = [failed_id, stale_id]
    extra["status"] = ["oom", "ok"]
    runs = pd.concat([data.runs, extra], ignore_index=True)
    g = whole_grid(record, runs)
    t = g.table.set_index("cell_id")
    assert t.loc[failed_id, "source"] == "failed" and math.isnan(t.loc[failed_id, METRICS[0]])
    assert t.loc[stale_id, "source"] == "measured"
    assert t.loc[stale_id, METRICS[0]] == extra.iloc[1]["output_throughput_tok_s"]
    assert math.isnan(t.loc[stale_id, f"{METRICS[0]}_low"])
    lines = report_whole_grid.section(g, str)
    row = next(line for line in lines if failed_id[:8] in line)
    assert "| failed (oom) | — | — |" in row
    assert "1 ran and failed" in "\n".join(lines)
    assert g.count("measured") == sum(c["source"] == "measured" for c in record["cells"]) + 1
    assert read_whole_grid(str(store), data.runs).table.equals(whole_grid(record, data.runs).table)


def test_a_predicted_cell_takes_the_series_its_record_or_its_group_names(store, record):
    """Ambiguous (two series of one model/quantization/GPU/workload, e.g. engine variants): no series
    for a record without ``series`` keys; with them (as ``active_sweep`` writes them), the measured
    cells' series of the same key."""
    data = read_sweep(str(store))
    ok = data.runs[data.runs["status"] == "ok"]
    variant = ok.iloc[[0]].copy()
    variant["cell_id"], variant["series"] = "f" * 16, f"{variant.iloc[0]['series']} [enforce_eager=true]"
    runs = pd.concat([data.runs, variant], ignore_index=True)
    quant = variant.iloc[0]["quantization"]
    record = {**record, "cells": [{k: v for k, v in c.items() if k != "series"} for c in record["cells"]]}  # an older record
    t = whole_grid(record, runs).table
    mine = t[(t["quantization"] == quant) & (t["source"] == "predicted")]
    assert len(mine) and (mine["series"] == "").all()
    assert (t[t["source"] == "measured"]["series"] != "").all()
    keyed = {**record, "cells": [{**c, "series": c["label"].split("/")[1]} for c in record["cells"]]}
    t = whole_grid(keyed, runs).table
    mine = t[(t["quantization"] == quant) & (t["source"] == "predicted")]
    assert (mine["series"] == ok[ok["quantization"] == quant]["series"].iloc[0]).all()
    lines = report_whole_grid.section(whole_grid(record, runs), str)
    assert any(line.startswith("| model | quantization | GPU | variant |") for line in lines)
    unknown = [line for line in lines if line.startswith(f"| {variant.iloc[0]['model']} | {quant} |") and "| ? |" in line]
    assert len(unknown) == len(mine)


def test_the_records_series_keys_resolve_variants(store, record):
    """The record as the active sweep writes it: every cell has a series key, and with an engine
    variant beside a series, each predicted cell still takes its own series."""
    assert all(c.get("series") for c in record["cells"])
    data = read_sweep(str(store))
    ok = data.runs[data.runs["status"] == "ok"]
    variant = ok.iloc[[0]].copy()
    variant["cell_id"], variant["series"] = "f" * 16, f"{variant.iloc[0]['series']} [enforce_eager=true]"
    t = whole_grid(record, pd.concat([data.runs, variant], ignore_index=True)).table
    assert (t[t["source"] == "predicted"]["series"] != "").all()
