"""The report of a real simulated sweep whose energy is attributed to steps and requests (issue 30,
``step_source=simulated``): section 2's "Per-request energy" table equals numpy's percentiles of the
requests table, the key answer "What a typical request costs" names each series' median request,
the energy table gains prefill's share; the HTML page draws the per-request energy charts with no
console error; and the same store without the attribution columns shows none of it."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from orchestrator.analysis.dataset import read_sweep
from tests.conftest import run_orchestrator
from tests.integration.test_report import report_cmd, section, shown, tables
from tests.integration.test_report_full_grid_html import page_data
from tests.integration.test_report_html import BROWSER_ARGS, CHROMIUM, open_page

KEY = "**What a typical request costs**"
ATTRIBUTION = ["energy_prefill_j", "energy_decode_j", "energy_j", "net_energy_prefill_j", "net_energy_decode_j",
               "net_energy_j"]
RUN_COLUMNS = ["step_source", "n_steps", "energy_in_steps_j", "energy_outside_steps_j", "net_energy_outside_steps_j",
               "prefill_energy_share"]
STATS = (("p10", 10), ("p50", 50), ("p90", 90))
SHORT = {"energy_j": "J/request", "energy_prefill_j": "prefill J", "energy_decode_j": "decode J"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("request_energy") / "store"
    proc = run_orchestrator(["+sweep=smoke", "engine=simulated", "name=re_it", f"store.dir={out}",
                             "dispatch.num_cpus=2", "dispatch.progress=false"], timeout=300)
    assert "sweep done:" in proc.stdout, proc.stdout[-2000:]
    return out


def _report(store: Path) -> tuple[str, Path]:
    out = store.parent / f"{store.name}_report"
    proc = report_cmd(store, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return (out / "report.md").read_text(), out


@pytest.fixture(scope="module")
def report(sweep) -> tuple[str, Path]:
    return _report(sweep)


@pytest.fixture(scope="module")
def measured(sweep) -> pd.DataFrame:
    """The ok cells' measured ok requests with attributed energy, read with pyarrow only."""
    runs = pq.read_table(sweep / "runs").to_pandas()
    req = pq.read_table(sweep / "requests").to_pandas()
    ok = set(runs.loc[runs["status"] == "ok", "cell_id"])
    keep = req["cell_id"].isin(ok) & (req["phase"] == "measured") & (req["status"] == "ok") & req["energy_j"].notna() \
        & ~req["drained"].fillna(False)
    return req[keep]


def _rows_titled(text: str, first_header: str, must: str) -> list[dict]:
    return [r for t in tables(text) if t and must in t[0] for r in t if next(iter(r)) == first_header]


def test_the_distribution_table_is_numpys_percentiles_of_the_requests(report, measured):
    text, out = report
    csv = pd.read_csv(out / "tables" / "request_energy.csv")
    by_cell = dict(tuple(measured.groupby("cell_id")))
    assert set(csv["cell_id"]) == set(by_cell)
    for row in csv.itertuples(index=False):
        req = by_cell[row.cell_id]
        assert row.n_requests_attributed == len(req) and row.step_source == "simulated"
        for column in SHORT:
            for name, q in STATS:
                assert np.isclose(getattr(row, f"{column}_{name}"), np.percentile(req[column], q)), (row.cell_id, column)
    detail = section(text, "## 2. Detailed results")
    assert "### Per-request energy" in detail and "### Per-request energy" not in section(text, "## 3. Energy")
    shown_rows = _rows_titled(detail.split("### Per-request energy", 1)[1], "workload", "J/request p50")
    assert len(shown_rows) == len(csv)
    for r in shown_rows:  # each Markdown row is one cell's numbers
        assert r["steps"] == "simulated"
        assert any(int(r["requests"]) == c.n_requests_attributed and all(
            shown(r[f"{SHORT[col]} {name}"], getattr(c, f"{col}_{name}")) for col in SHORT for name, _ in STATS)
            for c in csv.itertuples(index=False)), r


def test_the_key_answer_is_each_series_median_request(report, measured, sweep):
    text, out = report
    answers = section(text, "## Key answers")
    assert KEY in answers
    rows = _rows_titled(answers.split(KEY, 1)[1], "workload", "prefill %")
    runs = pq.read_table(sweep / "runs").to_pandas().set_index("cell_id")
    counts = measured.groupby("cell_id").size()
    cells = read_sweep(str(sweep)).ok.set_index("cell_id")[["series", "workload", "gpu"]]
    assert rows
    for r in rows:
        cell = next(c for c in counts.index if c.startswith(r["cell"]))
        req = measured[measured["cell_id"] == cell]
        assert int(r["requests"]) == len(req) and int(r["BS"]) == runs.loc[cell, "batch_size"]
        same = [c for c in counts.index if tuple(cells.loc[c]) == tuple(cells.loc[cell])]
        assert len(req) == counts[same].max()  # the series' cell with the most attributed requests
        energy = np.quantile(req["energy_j"], 0.5, method="lower")
        assert shown(r["J/request gross"], energy)
        median = req[np.isclose(req["energy_j"], energy)]
        assert any(shown(r["prefill J"], m.energy_prefill_j) and shown(r["decode J"], m.energy_decode_j)
                   and shown(r["J/request net"], m.net_energy_j) for m in median.itertuples()), r
        if energy:
            assert any(shown(r["prefill %"], m.energy_prefill_j / m.energy_j * 100) for m in median.itertuples())
    data = page_data(out / "report.html")
    group = next(g for g in data["answers"] if g["lead"].startswith(KEY))
    assert len(group["items"]) == len(rows)


def test_the_energy_table_gains_prefills_share(report, sweep):
    text, out = report
    runs = pq.read_table(sweep / "runs").to_pandas()
    energy = section(text, "## 3. Energy per batch size")
    assert "prefill % of net" in energy and "J/1k prompt tok gross" in energy and "*Prefill % of net*" in energy
    csv = pd.read_csv(out / "tables" / "energy.csv")
    for row in csv.itertuples(index=False):
        shares = runs.loc[runs["cell_id"].isin(row.cell_id.split(",")), "prefill_energy_share"]
        assert np.isclose(row.prefill_energy_pct, shares.mean() * 100)
    data = page_data(out / "report.html")
    assert "prefill_energy_pct" in data["tables"]["energy"]["columns"]
    assert set(data["request_energy"]) == set(pd.read_csv(out / "tables" / "request_energy.csv")["cell_id"])


def _strip_attribution(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "steps")
    for table, columns in (("runs", RUN_COLUMNS), ("requests", ATTRIBUTION)):
        for f in (dst / table).glob("*.parquet"):
            t = pq.read_table(f)
            pq.write_table(t.drop_columns([c for c in columns if c in t.column_names]), f)


def test_a_store_without_attribution_shows_none_of_it(sweep):
    bare = sweep.parent / "bare"
    _strip_attribution(sweep, bare)
    text, out = _report(bare)
    for absent in ("Per-request energy", "What a typical request costs", "prefill % of net"):
        assert absent not in text, absent
    assert not (out / "tables" / "request_energy.csv").exists()
    data = page_data(out / "report.html")
    assert "request_energy" not in data and "prefill_energy_pct" not in data["tables"]["energy"]["columns"]
    assert "chart-request-energy" not in (out / "report.html").read_text()


def test_the_page_draws_the_per_request_energy_charts(report):
    from playwright.sync_api import sync_playwright

    _, out = report
    data = page_data(out / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page, errors = open_page(browser, out / "report.html")
        page.wait_for_function("window.reportAllDrawn === true", timeout=60_000)
        n = {c: page.evaluate(f"document.getElementById('{c}').data.length") for c in
             ("chart-request-energy-cdf", "chart-request-energy-input", "chart-request-energy-output")}
        answers = page.evaluate("document.getElementById('answers').innerText")
        browser.close()
    assert not errors, errors
    assert n["chart-request-energy-cdf"] == len(data["request_energy"])  # a line per cell
    assert n["chart-request-energy-input"] >= 1 and n["chart-request-energy-input"] == n["chart-request-energy-output"]
    assert "What a typical request costs" in answers
