"""The report of a real simulated prefix-cache sweep (``+sweep=prefix_cache`` on the simulator:
sessions and the Mooncake sample, two rates each, prefix caching off and on; 10 s windows): the key
answer "What the prefix cache saves" pairs each off cell with its on cell and shows the runs-table
values of both; a store without such a pair has no such answer; the hit rate and J per 1k prompt
tokens stand in the results tables; workloads are named with their traffic's source; each cell's
length summary equals the percentiles of its request rows; the HTML page draws the new charts."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_orchestrator
from tests.integration.test_report import report, report_cmd, rows, section, shown, tables  # noqa: F401 (report: the fixture)
from tests.integration.test_report_full_grid_html import page_data
from tests.integration.test_report_html import BROWSER_ARGS, CHROMIUM, open_page

KEY = "**What the prefix cache saves**"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prefix_cache") / "store"
    proc = run_orchestrator(["+sweep=prefix_cache", "engine=simulated",
                             "engine.simulated.enable_prefix_caching=false,true", "workload.duration_s=10",
                             "name=pc_it", f"store.dir={out}", "dispatch.num_cpus=2", "dispatch.progress=false"],
                            timeout=300)
    assert "sweep done: 8 ok" in proc.stdout, proc.stdout[-2000:]
    return out


@pytest.fixture(scope="module")
def parquet(sweep):
    """The ok cells' runs rows (by cell id, with their config) and the requests, read with pyarrow only."""
    runs = pq.read_table(sweep / "runs").to_pandas()
    runs = runs[runs["status"] == "ok"].set_index("cell_id")
    runs["caching"] = [json.loads(c)["engine"]["simulated"]["enable_prefix_caching"] for c in runs["config_json"]]
    return runs, pq.read_table(sweep / "requests").to_pandas()


def _without_caching(config_json: str) -> dict:
    config = json.loads(config_json)
    del config["engine"]["simulated"]["enable_prefix_caching"]
    return config


def _cache_table(text: str) -> list[dict]:
    part = section(text, "## Key answers")
    return tables(part[part.index(KEY):])[0]


def _pair(cell: str) -> tuple[float, float]:
    off, on = cell.split(" → ")
    return float(off.replace(",", "")), float(on.replace(",", ""))


def test_each_pair_shows_the_runs_values_of_its_off_and_on_cells(report, parquet):
    text, out = report
    runs, _ = parquet
    table = _cache_table(text)
    assert len(table) == 4  # 2 workloads x 2 rates
    assert "J/request compares whole windows" in text and "the hit rate is the one measured in the on cell" in text
    seen = set()
    for row in table:
        off_id, on_id = (p.strip() for p in row["cells off / on"].split(" / "))
        off = runs.loc[[c for c in runs.index if c.startswith(off_id)][0]]
        on = runs.loc[[c for c in runs.index if c.startswith(on_id)][0]]
        seen |= {off.name, on.name}
        assert (off["caching"], on["caching"]) == (False, True)
        assert _without_caching(off["config_json"]) == _without_caching(on["config_json"])  # nothing else differs
        assert row["workload"] == f"{off['workload']} (source: {off['workload_source']})"
        assert shown(row["hit % (on)"], on["prefix_cache_hit_rate"] * 100) and on["prefix_cache_hit_rate"] > 0.3
        assert shown(row["offered req/s"], off["offered_rate_rps"]) and row["BS"] == "32"
        for header, column in (("J/request off → on", "energy_per_request_j"),
                               ("J/1k output tok off → on", "energy_per_1k_output_tokens_j"),
                               ("J/1k prompt tok off → on", "energy_per_1k_prompt_tokens_j"),
                               ("TTFT p50 (ms) off → on", "ttft_p50_ms"), ("TTFT p99 (ms) off → on", "ttft_p99_ms")):
            got_off, got_on = row[header].split(" → ")
            assert shown(got_off, off[column]) and shown(got_on, on[column]), header
        change = (on["energy_per_request_j"] / off["energy_per_request_j"] - 1) * 100
        assert shown(row["Δ J/request"], change)
        assert _pair(row["TTFT p50 (ms) off → on"])[1] < _pair(row["TTFT p50 (ms) off → on"])[0]  # the cache helps
    assert seen == set(runs.index)
    csv = pd.read_csv(out / "tables" / "prefix_cache_savings.csv")
    assert len(csv) == 4 and set(csv["cell_id_on"]) == {c for c in runs.index if runs.loc[c, "caching"]}


def test_hit_rate_prompt_energy_and_sources_stand_in_the_results_tables(report, parquet):
    text, _ = report
    runs, _ = parquet
    detail = [r for r in rows(section(text, "## 2. Detailed results")) if "cell" in r]
    assert len(detail) == len(runs)
    for r in detail:
        cell = runs.loc[[c for c in runs.index if c.startswith(r["cell"])][0]]
        assert shown(r["prefix cache hit %"], cell["prefix_cache_hit_rate"] * 100)
    energy = rows(section(text, "## 3. Energy per batch size"))  # a row per cell (one repeat each), by value
    prompt = sorted((r["J/1k prompt tok gross"] for r in energy), key=lambda t: float(t.replace(",", "")))
    assert len(prompt) == len(runs)
    assert all(shown(t, j) for t, j in zip(prompt, sorted(runs["energy_per_1k_prompt_tokens_j"])))
    assert "### mooncake_sample (source: trace) — poisson arrivals at " in text
    assert "Workloads: mooncake_sample (source: trace), sessions (source: sessions)." in text
    assert "workload source 4 trace, 4 sessions" in text or "workload source 4 sessions, 4 trace" in text


def test_the_length_summary_of_each_cell_equals_its_requests_percentiles(report, parquet):
    text, out = report
    runs, req = parquet
    good = req[(req["phase"] == "measured") & (req["status"] == "ok")]
    csv = pd.read_csv(out / "tables" / "request_lengths.csv").set_index("cell_id")
    md = tables(section(text, "### Request lengths"))[0]
    assert len(md) == len(runs) == len(csv)
    html = page_data(out / "report.html")["cells"]
    for cell, mine in good.groupby("cell_id"):
        expect = {}
        for tokens, short in (("input_tokens", "input"), ("output_tokens", "output"), ("cached_tokens", "cached")):
            values = mine[tokens].astype(float)
            stats = [np.percentile(values, 50), np.percentile(values, 90), values.max()]
            expect[short] = stats
            assert csv.loc[cell, [f"{tokens}_p50", f"{tokens}_p90", f"{tokens}_max"]].tolist() == pytest.approx(stats)
            assert html[cell]["lengths"][tokens] == pytest.approx(stats, rel=1e-3)  # 4 significant digits
        assert csv.loc[cell, "n_requests_measured_ok"] == len(mine) == html[cell]["lengths"]["n"]
        label = csv.loc[cell, "series"].replace(f"/{csv.loc[cell, 'gpu']}", "", 1) + " †"
        [row] = [r for r in md if r["series"] == label and r["workload"].startswith(csv.loc[cell, "workload"])]
        assert row["prefix caching"] == ("on" if runs.loc[cell, "caching"] else "off")
        assert shown(row["requests"], len(mine))
        for short, stats in expect.items():
            for name, value in zip(("p50", "p90", "max"), stats):
                assert shown(row[f"{short} tok {name}"], value), (cell, short, name)
    assert (out / "ttft_vs_input_tokens.png").stat().st_size > 10_000 and "](ttft_vs_input_tokens.png)" in text


def test_a_store_without_a_caching_pair_has_no_such_answer(sweep, parquet, tmp_path):
    """The same store without its caching-off cells: nothing to pair, so no answer and no table;
    the hit rate of the cells left still shows."""
    runs, _ = parquet
    copy = tmp_path / "on_only"
    shutil.copytree(sweep, copy)
    for cell in runs.index[~runs["caching"].astype(bool)]:
        (copy / "runs" / f"{cell}.parquet").unlink()
    proc = report_cmd(copy, "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "What the prefix cache saves" not in text and "Generated by" in text
    assert not (tmp_path / "r" / "tables" / "prefix_cache_savings.csv").exists()
    assert "| prefix cache hit % |" in section(text, "## 2. Detailed results")
    assert len(tables(section(text, "### Request lengths"))[0]) == 4


def test_the_page_draws_ttft_against_length_and_each_cells_length_distributions(report):
    _, out = report
    assert Path(CHROMIUM).is_file(), f"no Chromium at {CHROMIUM}"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page, errors = open_page(browser, out / "report.html")
        page.wait_for_function("window.reportAllDrawn === true", timeout=60_000)
        for chart in ("chart-ttft-input", "chart-ttft-uncached"):
            names = page.evaluate(f"document.getElementById('{chart}').data.map(t => [t.name, t.xaxis, t.x.length])")
            expected = {(f"prefix caching {s}", axis) for s in ("off", "on") for axis in ("x", "x2")}  # 2 workloads
            assert {(n, x) for n, x, _ in names} == expected
            assert all(k > 0 for *_, k in names), chart
        answers = page.locator("#answers li").all_inner_texts()
        assert sum("hit rate" in t and "J/request" in t for t in answers) == 4
        page.locator("section[data-table=points] button.view").first.click()
        page.wait_for_selector("#drill-lengths .main-svg", timeout=10_000)
        hist = page.evaluate("document.getElementById('drill-lengths').data.map(t => t.name)")
        assert [h.split(",")[0] for h in hist] == ["input tokens", "output tokens"]
        assert page.locator("#drill p.lengths").inner_text().startswith("Lengths of its ")
        assert page.locator("section[data-table='request lengths'] tbody tr").count() == 8
        assert errors == []
        browser.close()
