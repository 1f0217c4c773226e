"""``report.html`` / ``compare.html``: one self-contained page that opens from disk with no network.

The page embeds plotly.js — its cartesian bundle, ``static/plotly-cartesian.min.js``, v4.1.1 from
npm's ``plotly.js-cartesian-dist-min`` (MIT, ``static/plotly-LICENSE.txt``): scatter, bar and
histogram traces, 1.5 MB where the full bundle is 4.8 MB and takes 3× as long to parse — inline,
as is (the browser parses it with the page: inflating it first cost more than it saved); the
report's own script and style (``static/``); and its data (``html_data``), gzip-compressed and
base64-encoded, inflated by the browser's own ``fetch`` of a ``data:`` URL and
``DecompressionStream`` (no network). A page whose data has ``request_energy`` also gets
``static/request_energy.js`` after the report's script (its charts join the page's before the data
is inflated; a page without it is as it was), and likewise one whose data has ``whole_grid`` (an
active sweep's predictions) ``static/whole_grid.js``. ``window.reportReady`` turns true
once the page is usable (filters, tables and the first charts drawn); ``window.reportAllDrawn``
once every chart is (the rest are drawn right after, one per frame).
"""
from __future__ import annotations

import base64
import functools
import gzip
import json
from importlib import resources
from pathlib import Path

from orchestrator.report.analyse import Analysis
from orchestrator.report.html_data import page_payload

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{css}</style></head>
<body data-page="{page}">
<header><h1>{title}</h1><p id="subtitle"></p></header>
<main id="app"><p id="loading">Loading…</p></main>
<script>{plotly}</script>
<script id="data-gz" type="application/octet-stream">{data}</script>
<script>{js}</script>
</body></html>
"""


def _static(name: str) -> str:
    return resources.files("orchestrator.report").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def _packed(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    js = _static("plotly-cartesian.min.js")
    if "</script" in js.lower():  # it would end the inline script early
        raise ValueError("plotly-cartesian.min.js contains '</script': cannot be inlined")
    return js


def render_page(payload: dict, page: str, title: str) -> str:
    """The page's HTML for ``payload`` (``page``: "report" or "compare")."""
    js = _static("report.js") + (_static("request_energy.js") if "request_energy" in payload else "")
    js += _static("whole_grid.js") if "whole_grid" in payload else ""
    return PAGE.format(title=_escape(title), page=page, css=_static("report.css"), plotly=_plotly_js(),
                       data=_packed(json.dumps(payload, separators=(",", ":"), allow_nan=False)), js=js)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_html(a: Analysis, out: Path) -> Path:
    """Write ``report.html`` of the analysed sweep into ``out``."""
    path = out / "report.html"
    path.write_text(render_page(page_payload(a), "report", f"Sweep report: {a.data.name}"), encoding="utf-8")
    return path


def write_compare_html(payload: dict, title: str, out: Path) -> Path:
    """Write ``compare.html`` (``payload`` from ``html_data.compare_payload``) into ``out``."""
    path = out / "compare.html"
    path.write_text(render_page(payload, "compare", title), encoding="utf-8")
    return path
