"""The HTML report of a real simulated sweep in a real headless Chromium (Debian's, driven by
Playwright; no browser download, no network): the page opens from disk with no console error,
every chart draws, a filter changes the plotted series, a drill-down opens with its three charts,
a table sorts; the comparison page draws; the Markdown links to both. And the dataset is
readable as-is: DuckDB and polars get the same rows as ``orchestrator.store.sweep_store.load``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, run_orchestrator

CHROMIUM = os.environ.get("ORCHESTRATOR_CHROMIUM", "/usr/bin/chromium")
CHARTS = ["chart-throughput", "chart-energy", "chart-energy-net", "chart-ttft", "chart-tpot", "chart-pareto", "chart-roofline"]
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two quantizations, offline and chat, two batch sizes, two repeats (intervals on the page)."""
    out = tmp_path_factory.mktemp("html") / "sweep"
    proc = run_orchestrator(["-m", "engine=simulated", "model=llama2_7b", "gpu=h100", "quantization=none,awq",
                             "workload=offline,chat_medium", "batch_size=1,8", "repeats=2", "workload.duration_s=5",
                             # 1 req/s: a batch of 1 keeps up (~0.8 s a request), so every chat cell
                             # completes requests in its 5 s window and all 16 cells end ok
                             "workload.rate_rps=1", "workload.min_window_s=2", f"store.dir={out}",
                             "dispatch.num_cpus=2", "dispatch.progress=false"], timeout=600, check=False)
    assert proc.returncode == 0 and "sweep done: 16 ok" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def report(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.report", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pages(sweep) -> Path:
    out = sweep.parent / "report"
    assert report(sweep, "--out", out, "--no-csv").returncode == 0
    cmp = report("compare", sweep, sweep, "--out", out / "cmp")
    assert cmp.returncode == 0, cmp.stderr
    cal = out / "calibration.json"  # as scripts/calibrate_simulator.py writes it: what the fit saw
    cal.write_text(json.dumps({"quantization": "none", "workload": "offline", "model": "llama2_7b", "gpu": "h100"}))
    fitted = report("compare", sweep, sweep, "--out", out / "cmp_fitted", "--fitted-on", cal)
    assert fitted.returncode == 0, fitted.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), (f"no Chromium at {CHROMIUM}: install Debian's chromium (.ci/run does) or "
                                      "set ORCHESTRATOR_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network request: {r.url}") if not r.url.startswith(
        ("file://", "data:", "blob:")) else None)
    page.goto(path.as_uri())
    page.wait_for_function("window.reportReady === true", timeout=60_000)
    return page, errors


def traces(page, chart: str) -> int:
    return page.evaluate(f"document.getElementById('{chart}').data.length")


def test_the_page_is_self_contained_light_and_linked(pages):
    html = (pages / "report.html").read_text()
    assert (pages / "report.html").stat().st_size < 5 * 2**20
    assert "<script src" not in html and "<link" not in html  # nothing to fetch (the browser test watches requests)
    assert "[report.html](report.html)" in (pages / "report.md").read_text()
    assert "[compare.html](compare.html)" in (pages / "cmp" / "compare.md").read_text()


TABLED = ("What the prefix cache saves", "What a typical request costs")
"""Key answers that report.md gives as a table and the page as one sentence per row."""


def answers_listed_as_bullets(page) -> list:
    """The page's key answers, less the groups report.md gives as tables (``TABLED``)."""
    return [t for g in page.locator("#answers .answer-group").all()
            if not any(k in g.locator("p").first.inner_text() for k in TABLED)
            for t in g.locator("li").all_inner_texts()]


def test_charts_filters_drilldown_and_tables_work_in_chromium(pages, browser):
    page, errors = open_page(browser, pages / "report.html")
    page.wait_for_function("window.reportAllDrawn === true", timeout=60_000)
    # the key answers above the charts, as report.md states them: same sentences, series in bold
    key = (pages / "report.md").read_text().split("## Key answers")[1].split("\n## ")[0]
    md = [line[2:] for line in key.splitlines() if line.startswith("- ")]
    items = answers_listed_as_bullets(page)
    assert md and items == [t.replace("**", "") for t in md]
    assert page.locator("#answers li strong").count() == page.locator("#answers li").count()
    for chart in CHARTS:  # drawn: plotly's SVG is there and holds traces
        assert page.locator(f"#{chart} .main-svg").count() >= 1, chart
        assert traces(page, chart) > 0, chart
    before = traces(page, "chart-throughput")
    page.click("fieldset[data-axis=quantization] input[value=awq]")
    after = traces(page, "chart-throughput")
    assert 0 < after < before
    names = page.evaluate("document.getElementById('chart-throughput').data.map(t => t.name).join('|')")
    assert "awq" not in names and "none" in names and "†" in names  # simulated series are marked
    page.click("fieldset[data-axis=quantization] input[value=awq]")
    assert traces(page, "chart-throughput") == before
    # intervals from the two repeats
    assert page.evaluate("document.getElementById('chart-throughput').data.some(t => t.error_y && t.error_y.visible)")
    page.locator("section[data-table=points] button.view").first.click()
    for chart in ("drill-timeline", "drill-dist", "drill-power"):
        page.wait_for_selector(f"#{chart} .main-svg", timeout=10_000)
    assert traces(page, "drill-power") == 1
    dist = page.evaluate("document.getElementById('drill-dist').data.map(t => [t.name, t.x.length])")
    assert [name for name, _ in dist] == [f"TTFT (ms), n={dist[0][1]}", f"TPOT (ms), n={dist[1][1]}"]  # n: samples drawn
    col = page.locator("section[data-table=points] tbody tr td:nth-child(3)")
    first = col.all_inner_texts()
    page.locator("section[data-table=points] th", has_text="batch_size").click()
    assert col.all_inner_texts() == sorted(first, key=float)
    page.locator("section[data-table=points] th", has_text="batch_size").click()
    assert col.all_inner_texts() == sorted(first, key=float, reverse=True)
    assert errors == []
    page.close()


def test_the_comparison_page_draws(pages, browser):
    page, errors = open_page(browser, pages / "cmp" / "compare.html")
    assert page.locator("#chart-compare .main-svg").count() >= 1 and traces(page, "chart-compare") == 4
    assert page.locator("section[data-table='matched points'] tbody tr").count() == 8
    assert page.locator("section[data-table='prediction error: held out and fitted']").count() == 0  # no --fitted-on
    assert errors == []
    page.close()


def test_the_comparison_page_shows_the_prediction_error(pages, browser):
    """compare --fitted-on: the page's error table has the rows of prediction_errors.csv (3 held-out
    groups and their total, the fitted group and its total), in that order."""
    page, errors = open_page(browser, pages / "cmp_fitted" / "compare.html")
    section = page.locator("section[data-table='prediction error: held out and fitted']")
    groups = [section.locator("tbody tr").nth(i).locator("td").first.inner_text() for i in range(6)]
    assert section.locator("tbody tr").count() == 6
    assert groups == list(pd.read_csv(pages / "cmp_fitted" / "prediction_errors.csv")["group"])
    assert groups[3] == "all held out" and groups[5] == "all fitted"
    assert not (pages / "cmp" / "prediction_errors.csv").exists()
    assert errors == []
    page.close()


def test_duckdb_and_polars_read_the_store_as_is(sweep):
    import duckdb
    import polars as pl

    from orchestrator.store.sweep_store import load

    runs = load(str(sweep)).runs.to_pandas().sort_values("cell_id").reset_index(drop=True)
    cols = ["cell_id", "status", "batch_size", "output_throughput_tok_s", "energy_j"]
    q = duckdb.sql(f"SELECT {', '.join(cols)} FROM read_parquet('{sweep}/runs/*.parquet') ORDER BY cell_id").df()
    assert q.to_dict("list") == runs[cols].to_dict("list")
    p = pl.read_parquet(f"{sweep}/runs/*.parquet").sort("cell_id").select(cols)
    assert p.to_dict(as_series=False) == runs[cols].to_dict("list")
    n_req = duckdb.sql(f"SELECT count(*) FROM read_parquet('{sweep}/requests/*.parquet')").fetchall()[0][0]
    assert n_req == load(str(sweep)).requests.num_rows


def test_the_readme_duckdb_query_runs(sweep):
    import duckdb

    readme = (Path(ROOT) / "README.md").read_text()
    sql = readme.split("```sql\n", 1)[1].split("```", 1)[0].replace("outputs/smoke", str(sweep))
    got = duckdb.sql(sql).fetchall()
    assert len(got) == 4 and {(m, q, b) for m, q, b, *_ in got} == {
        ("llama2_7b", q, b) for q in ("awq", "none") for b in (1, 8)}
    assert all(tok > 0 and j > 0 for *_, tok, j in got)
