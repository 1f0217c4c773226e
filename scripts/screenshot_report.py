"""Screenshots of an HTML report in headless Chromium: ``overview.png`` (filters and the first
charts) and ``drilldown.png`` (the drill-down of the cell in the points table's row ``--row``).

    python scripts/screenshot_report.py experiments/h200_study/report/report.html --out docs/img --prefix h200_study_
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--row", type=int, default=0)
    ap.add_argument("--chromium", default=os.environ.get("ORCHESTRATOR_CHROMIUM", "/usr/bin/chromium"))
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(args.page.resolve().as_uri())
        page.wait_for_function("window.reportAllDrawn === true", timeout=120_000)
        page.screenshot(path=str(args.out / f"{args.prefix}overview.png"))
        page.locator("section[data-table=points] button.view").nth(args.row).click()
        page.wait_for_selector("#drill-power .main-svg")
        page.locator("#drill").screenshot(path=str(args.out / f"{args.prefix}drilldown.png"))
        browser.close()
    print(f"wrote {args.out}/{args.prefix}overview.png and drilldown.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
