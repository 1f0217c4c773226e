"""The HTML report of the whole default grid (``+sweep=full`` on the simulated engine: 78 series of
26 model/quantization/GPU combinations over 3 workloads) reads on one screen in headless Chromium
at 1400×900: a few key answers (the rest one click away), then the filter bar and the first chart
above the fold; every chart small multiples (a panel per workload), each series once in an
always-shown legend with one colour everywhere, every axis titled, and hovering a line names its
series. A hand-made page checks what a store with ``batch_knob`` and ``device`` shows (an hf cell
on the CPU, two batch knobs) and that one without them still draws."""
from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from orchestrator.report.html_page import render_page
from tests.conftest import run_orchestrator
from tests.integration.test_report_html import BROWSER_ARGS, CHARTS, CHROMIUM, answers_listed_as_bullets, report

VIEWPORT = {"width": 1400, "height": 900}
BATCH_CHARTS = CHARTS[:5]  # x: batch size; the pareto and roofline charts have their own x


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    """The real default grid on the simulated engine and its report (~10 overloaded chat cells
    end without a completed request: exit 3)."""
    store = tmp_path_factory.mktemp("full") / "store"
    run = run_orchestrator(["+sweep=full", f"store.dir={store}", "dispatch.num_cpus=2", "dispatch.progress=false"],
                           timeout=900, check=False)
    assert run.returncode in (0, 3) and "sweep done:" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    out = store.parent / "report"
    made = report(store, "--out", out, "--no-csv")
    assert made.returncode == 0, made.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).is_file(), f"no Chromium at {CHROMIUM}"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, full_report):
    yield from opened(browser, full_report / "report.html")


def opened(browser, path: Path):
    """A fresh page of ``path`` with every chart drawn; fails on any console error."""
    pg = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(path.as_uri())
    pg.wait_for_function("window.reportAllDrawn === true", timeout=120_000)
    yield pg
    assert errors == []
    pg.close()


def page_data(html: Path) -> dict:
    """The data the page embeds (gzip + base64, see html_page.py)."""
    b64 = html.read_text().split('<script id="data-gz" type="application/octet-stream">', 1)[1].split("</script>", 1)[0]
    return json.loads(gzip.decompress(base64.b64decode(b64)))


def box(pg, selector: str) -> dict:
    return pg.locator(selector).bounding_box()


def chart_state(pg, chart: str) -> dict:
    """Per chart: its traces (name, legend group, axes, colour, whether in the legend), its legend's
    entries, its axis titles and its panel titles, as plotly drew them."""
    return pg.evaluate("""(id) => {
      const gd = document.getElementById(id), fl = gd._fullLayout;
      return {
        traces: gd._fullData.map((t) => ({ name: t.name, group: t.legendgroup, x: t.xaxis, y: t.yaxis,
          color: t.marker && t.marker.color, legend: t.showlegend })),
        legend: [...gd.querySelectorAll(".legend .traces .legendtext")].map((e) => e.textContent),
        axes: Object.fromEntries(Object.keys(fl).filter((k) => /^[xy]axis\\d*$/.test(k)).map((k) => [k, fl[k].title.text])),
        panels: (fl.annotations || []).map((a) => a.text),
      };
    }""", chart)


def key_answers(md: Path) -> list[str]:
    section = md.read_text().split("## Key answers")[1].split("\n## ")[0]
    return [line[2:].replace("**", "") for line in section.splitlines() if line.startswith("- ")]


def test_the_filters_and_the_first_chart_are_on_the_first_screen(page):
    answers, filters, first = box(page, "#answers"), box(page, "#filters"), box(page, "#chart-throughput")
    assert first["y"] < VIEWPORT["height"], first
    assert answers["y"] + answers["height"] <= filters["y"] < filters["y"] + filters["height"] <= first["y"]
    assert answers["height"] < 300, answers
    assert filters["height"] < 100, filters  # one or two lines, however many values an axis has


def test_a_few_key_answers_show_and_show_all_reveals_every_one(page, full_report):
    every = key_answers(full_report / "report.md")
    shown = page.locator("#answers li:visible")
    groups = page.locator("#answers .answer-group").count()
    assert len(every) > 60 and 0 < shown.count() <= 2 * groups  # the full grid has ~40 per group
    toggle = page.locator("#answers-all")
    assert toggle.inner_text() == f"show all {page.locator('#answers li').count()} answers"
    toggle.click()
    assert answers_listed_as_bullets(page) == every  # report.md gives the others as tables
    assert shown.count() == page.locator("#answers li").count()
    toggle.click()
    assert shown.count() <= 2 * groups


def test_every_chart_has_a_legend_naming_each_series_once_in_one_colour(page):
    colours: dict[str, str] = {}
    for chart in CHARTS:
        state = chart_state(page, chart)
        names = {t["name"] for t in state["traces"]}
        assert state["legend"] and sorted(state["legend"]) == sorted(names), chart  # each series once
        assert len(state["legend"]) < 40, chart  # series and the chart's extras (fits, roofs), not 78 lines
        for t in state["traces"]:
            if t["name"].endswith("†"):  # a series (simulated): one colour in every panel and chart
                assert colours.setdefault(t["name"], t["color"]) == t["color"], (chart, t)
    assert len(colours) == 26


def test_every_axis_of_every_panel_has_a_title(page, full_report):
    points = page_data(full_report / "report.html")["points"]
    workloads = sorted(set(points["workload"]))
    # what batch size sets, per panel: each static batch's size offline, max-num-seqs for the
    # (simulated) server cells
    knobs = {w: set(k for k, pw in zip(points["batch_knob"], points["workload"]) if pw == w) - {"batch size"}
             for w in workloads}
    assert knobs["offline"] == set() and all(knobs[w] == {"max-num-seqs"} for w in workloads if w != "offline")
    for chart in CHARTS:
        state = chart_state(page, chart)
        assert len(state["axes"]) == 2 * len(workloads), chart  # a panel per workload
        assert state["panels"] == [f"<b>workload: {w}</b>" for w in workloads], chart
        assert all(title and title.strip() for title in state["axes"].values()), (chart, state["axes"])
        if chart in BATCH_CHARTS:
            for i, w in enumerate(workloads):
                title = state["axes"]["xaxis" if i == 0 else f"xaxis{i + 1}"]
                assert title == ("batch size" + (f" ({', '.join(sorted(knobs[w]))})" if knobs[w] else "")), \
                    (chart, w, title)
    throughput = chart_state(page, "chart-throughput")
    assert {(t["x"], t["y"]) for t in throughput["traces"]} == {("x", "y"), ("x2", "y2"), ("x3", "y3")}
    assert throughput["axes"]["yaxis2"] == "output throughput (tok/s)"


def test_hovering_a_line_names_its_series_workload_batch_and_value(page):
    hovered = page.evaluate("""() => {
      const gd = document.getElementById("chart-throughput"), out = [];
      gd.data.forEach((t, i) => {
        if (!t.name.endsWith("†")) return;  // the series, not the fitted laws
        Plotly.Fx.hover(gd, [{ curveNumber: i, pointNumber: 0 }], t.xaxis + t.yaxis);
        out.push([t.name, gd._fullData[i].x[0], gd.querySelector(".hoverlayer").textContent]);
        Plotly.Fx.unhover(gd);
      });
      return out;
    }""")
    assert len(hovered) == 78
    workloads = ("chat_high", "chat_medium", "offline")
    for name, batch, text in hovered:
        assert name in text and f"batch size {batch}:" in text and "output throughput (tok/s) " in text, (name, text)
        assert any(w in text for w in workloads), text


def test_the_mouse_on_a_point_of_a_panel_names_it_and_a_click_opens_its_cell(page):
    """A real mouse over the 4th point of a series in the second panel, then a click on it."""
    x, y, cell = page.evaluate("""() => {
      const gd = document.getElementById("chart-throughput"), fl = gd._fullLayout, r = gd.getBoundingClientRect();
      const t = gd._fullData.find((t) => t.xaxis === "x2" && t.name.endsWith("†"));
      return [r.left + fl.xaxis2._offset + fl.xaxis2.l2p(Math.log10(t.x[3])),
              r.top + fl.yaxis2._offset + fl.yaxis2.l2p(Math.log10(t.y[3])), t.customdata[3]];
    }""")
    page.mouse.move(x, y)
    page.wait_for_function("document.querySelector('#chart-throughput .hoverlayer').textContent.includes('†')")
    text = page.locator("#chart-throughput .hoverlayer").text_content()
    assert "chat_medium" in text and "batch size " in text  # the second panel's workload
    page.mouse.click(x, y)
    page.wait_for_selector("#drill-power .main-svg", timeout=10_000)
    assert page.locator("#drill h2").inner_text().startswith("Cell ") and cell


def test_a_legend_click_hides_a_series_in_every_panel_and_panels_follow_the_select(page):
    entry = page.locator("#chart-throughput .legend .traces").nth(1)
    name = entry.text_content()
    entry.locator(".legendtoggle").click()
    hidden = f"""document.getElementById('chart-throughput').data.filter((t) => t.name === {json.dumps(name)})"""
    page.wait_for_function(f"{hidden}.every((t) => t.visible === 'legendonly')")
    assert page.evaluate(f"{hidden}.length") == 3  # one line in each workload's panel
    page.select_option("#panels-by", "gpu")
    page.wait_for_function("window.reportAllDrawn === true")
    state = chart_state(page, "chart-throughput")
    assert state["panels"] == ["<b>GPU: a800</b>", "<b>GPU: h100</b>", "<b>GPU: t4</b>"]
    assert all("/a800" not in n and " · " in n for n in state["legend"] if n.endswith("†"))  # the panel names the GPU
    page.select_option("#panels-by", "none")
    page.wait_for_function("window.reportAllDrawn === true")
    state = chart_state(page, "chart-throughput")
    assert state["panels"] == [] and len(state["legend"]) == 79  # 78 series and the fitted laws, all named


def test_an_axis_with_many_values_filters_from_its_drop_down(page):
    before = page.evaluate("document.getElementById('chart-throughput').data.length")
    page.click("fieldset[data-axis=quantization] summary")
    page.click("fieldset[data-axis=quantization] input[value=fp8]")
    page.wait_for_function("window.reportAllDrawn === true")
    assert page.locator("fieldset[data-axis=quantization] summary").inner_text() == "4 of 5"
    names = page.evaluate("document.getElementById('chart-throughput').data.map((t) => t.name)")
    assert 0 < len(names) < before and not any("/fp8/" in n for n in names)
    page.mouse.click(5, 5)  # a click elsewhere closes the list
    assert not page.locator("fieldset[data-axis=quantization] details").evaluate("d => d.open")


# ------------------------------------------------------------------ a hand-made page
METRICS = ["output_throughput_tok_s", "energy_per_output_token_j", "net_energy_per_output_token_j", "ttft_p50_ms",
           "tpot_p50_ms", "e2e_p50_ms"]


def payload(with_new_columns: bool) -> dict:
    """Two series on one GPU: hf on the CPU (a static batch) and the simulator (max-num-seqs)."""
    rows = [("tiny/none/h100 [hf]", "hf", False, "batch size", "cpu"),
            ("tiny/none/h100 [simulated]", "simulated", True, "max-num-seqs", "h100")]
    points: dict[str, list] = {k: [] for k in ["series", "workload", "gpu", "model", "quantization", "engine",
                                                "simulated", "flags", "batch_size", "cell_id", *METRICS]}
    if with_new_columns:
        points.update(batch_knob=[], device=[])
    for series, engine, simulated, knob, device in rows:
        for bs in (1, 2):
            values = [series, "offline", "h100", "tiny", "none", engine, simulated, "", bs, f"{engine}{bs}"]
            for key, value in zip(points, values + [10.0 * bs] * len(METRICS) + [knob, device]):
                points[key].append(value)
    return {"title": "hand-made", "path": "/nowhere", "n_cells": 4, "n_ok": 4, "slo": "none", "points": points,
            "fits": {}, "roofline": {}, "roofs": {}, "tables": {}, "cells": {}, "answers": []}


@pytest.mark.parametrize("with_new_columns", [True, False], ids=["batch_knob-and-device", "an-older-store"])
def test_the_cpu_and_the_batch_knobs_are_named_where_the_store_has_them(browser, tmp_path, with_new_columns):
    html = tmp_path / "report.html"
    html.write_text(render_page(payload(with_new_columns), "report", "hand-made"))
    for pg in opened(browser, html):
        engines = pg.locator("fieldset[data-axis=kind] label").all_inner_texts()
        x_title = chart_state(pg, "chart-throughput")["axes"]["xaxis"]
        subtitle = pg.locator("#subtitle").inner_text()
        if with_new_columns:
            assert [e.strip() for e in engines] == ["measured (hf, CPU)", "simulated †"]
            assert x_title == "batch size (hf: batch size; simulated: max-num-seqs)"
            assert "ran on the CPU" in subtitle
        else:
            assert [e.strip() for e in engines] == ["measured (hf)", "simulated †"]
            assert x_title == "batch size" and "CPU" not in subtitle
        assert pg.locator("#answers").is_hidden()
