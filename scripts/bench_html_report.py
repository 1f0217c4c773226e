"""The HTML report's weight and speed on a sweep: page size, and the time to interactive in headless
Chromium, median of ``--loads`` fresh pages — measured in the page (``performance.now()`` when the
page sets ``window.reportReady``: filters, tables and the first chart drawn; its origin is the
navigation's start) and, for reference, as the harness's wall time from ``goto`` until it sees the
flag (Playwright's round trips included); also the time of a filter change and of a drill-down. Targets (issue 15): under 5 MB and
interactive within 2 s for ``+sweep=full``.

    python -m orchestrator +sweep=full engine=simulated store.dir=/tmp/fullsim
    python scripts/bench_html_report.py /tmp/fullsim --out experiments/benchmarks/html_report
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def measure(page_path: Path, loads: int, chromium: str) -> dict:
    from playwright.sync_api import sync_playwright

    ready, in_page, filt, drill = [], [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        for _ in range(loads):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            page.goto(page_path.as_uri())
            page.wait_for_function("window.reportReady === true", timeout=120_000)
            ready.append(time.perf_counter() - t0)
            in_page.append(page.evaluate("window.reportTimings.drawn") / 1000.0)
            t0 = time.perf_counter()
            page.locator("fieldset[data-axis=workload] input").first.click()
            page.evaluate("new Promise(r => requestAnimationFrame(() => r()))")
            filt.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            page.locator("section[data-table=points] button.view").first.click()
            page.wait_for_selector("#drill-power .main-svg")
            drill.append(time.perf_counter() - t0)
            page.close()
        version = browser.version
        browser.close()
    return {"chromium": version, "loads": loads, "ready_s": ready, "ready_median_s": statistics.median(ready),
            "interactive_in_page_s": in_page, "interactive_in_page_median_s": statistics.median(in_page),
            "filter_median_s": statistics.median(filt), "drill_median_s": statistics.median(drill)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--chromium", default=os.environ.get("ORCHESTRATOR_CHROMIUM", "/usr/bin/chromium"))
    args = ap.parse_args(argv)
    report_dir = Path("/tmp") / f"bench_html_{os.getpid()}"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator.report", args.store, "--out", str(report_dir), "--no-csv"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    report_s = time.perf_counter() - t0
    page = report_dir / "report.html"
    result = {"store": args.store, "report_command_s": report_s, "page_bytes": page.stat().st_size,
              **measure(page, args.loads, args.chromium)}
    result["targets"] = {"page_under_5_MB": result["page_bytes"] < 5 * 2**20, "interactive_within_2_s": result["interactive_in_page_median_s"] < 2.0}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    md = [f"# HTML report on `{args.store}`", "",
          f"`python scripts/bench_html_report.py {args.store} --out {args.out}` ({result['chromium']})", "",
          "| page MB | report command s | interactive s, in the page (median; each load) | harness wall s (median) "
          "| filter change s | drill-down s |",
          "|---:|---:|---:|---:|---:|---:|",
          f"| {result['page_bytes'] / 2**20:.2f} | {report_s:.1f} | {result['interactive_in_page_median_s']:.2f} "
          f"({', '.join(f'{x:.2f}' for x in result['interactive_in_page_s'])}) | {result['ready_median_s']:.2f} "
          f"| {result['filter_median_s']:.2f} | {result['drill_median_s']:.2f} |", "",
          f"Targets: page < 5 MB {'met' if result['targets']['page_under_5_MB'] else 'MISSED'}; interactive < 2 s "
          f"{'met' if result['targets']['interactive_within_2_s'] else 'MISSED'}."]
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
