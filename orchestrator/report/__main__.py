"""``python -m orchestrator.report <sweep dir> [options]`` and ``... compare <A> <B> [--out DIR]``.

Bad input (no sweep, no ok cell, missing baseline batch size, unknown --power-cell) prints one
line starting with ``error:`` on stderr and exits with code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchestrator.analysis.cost import CostAssumptions
from orchestrator.analysis.dataset import SweepError
from orchestrator.analysis.recommend import Slo
from orchestrator.report.options import ReportOptions


def report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator.report",
                                description="The report of a sweep: report.md with its PNG plots and CSV tables, "
                                            "and report.html, an interactive page (filters, charts, drill-down) "
                                            "(or: python -m orchestrator.report compare <A> <B> [--out DIR]).")
    p.add_argument("sweep_dir", help="the sweep's directory (outputs/<name>) or store URI")
    p.add_argument("--out", help="where report.md, its PNGs and tables, and report.html go (default: <sweep dir>/report)")
    p.add_argument("--baseline-batch", type=int, default=None,
                   help="batch size every change is relative to (default: each series' smallest ok batch size); "
                        "series that did not run it get no changes")
    p.add_argument("--requests-per-month", type=float, default=CostAssumptions.requests_per_month)
    p.add_argument("--price-per-kwh", type=float, default=CostAssumptions.price_per_kwh, help="currency per kWh")
    p.add_argument("--grid-gco2-per-kwh", type=float, default=CostAssumptions.grid_gco2_per_kwh)
    p.add_argument("--ttft-p99-slo-ms", type=_slo, default=Slo.ttft_p99_ms, help="TTFT p99 SLO (ms; 'none': no SLO)")
    p.add_argument("--tpot-p99-slo-ms", type=_slo, default=Slo.tpot_p99_ms, help="TPOT p99 SLO (ms; 'none': no SLO)")
    p.add_argument("--power-cell", help="cell id (or unique prefix) of the power timeline plot")
    p.add_argument("--no-csv", action="store_true", help="do not write tables/*.csv")
    p.add_argument("--no-html", action="store_true", help="do not write the interactive report.html")
    p.add_argument("--jobs", type=int, default=1, help="processes drawing the plots (default 1: in this process)")
    return p


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator.report compare",
                                description="The same cells of two sweeps side by side, with changes (B vs A).")
    p.add_argument("sweep_a")
    p.add_argument("sweep_b")
    p.add_argument("--out", help="where compare.md and compare.html go (default: <A>/compare_<name of B>)")
    p.add_argument("--fitted-on", metavar="CALIBRATION_JSON",
                   help="B is a prediction calibrated with this calibration.json: report its error on the points "
                        "held out from the fit and on the fitted ones")
    return p


def _slo(text: str) -> float | None:
    return None if text.lower() in ("none", "off", "") else float(text)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise SweepError(f"{name} must be > 0 (got {value})")


def _writable(out: str | None) -> None:
    """``--out`` can be created and written (one line otherwise, before the sweep is read)."""
    if out is None:
        return
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        probe = Path(out) / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise SweepError(f"--out {out}: cannot create or write there ({exc.strerror or exc})") from None


def run_report(argv: list[str]) -> str:
    args = report_parser().parse_args(argv)
    if args.baseline_batch is not None:
        _positive("--baseline-batch", args.baseline_batch)
    _positive("--requests-per-month", args.requests_per_month)
    for name, value in (("--ttft-p99-slo-ms", args.ttft_p99_slo_ms), ("--tpot-p99-slo-ms", args.tpot_p99_slo_ms)):
        if value is not None:
            _positive(name, value)
    _positive("--jobs", args.jobs)
    for name in ("price_per_kwh", "grid_gco2_per_kwh"):
        if getattr(args, name) < 0:
            raise SweepError(f"--{name.replace('_', '-')} must be >= 0 (got {getattr(args, name)})")
    _writable(args.out)
    opts = ReportOptions(
        sweep_dir=args.sweep_dir, out_dir=args.out, baseline_batch=args.baseline_batch,
        cost=CostAssumptions(args.requests_per_month, args.price_per_kwh, args.grid_gco2_per_kwh),
        slo=Slo(args.ttft_p99_slo_ms, args.tpot_p99_slo_ms), power_cell=args.power_cell, write_csv=not args.no_csv,
        write_html=not args.no_html, jobs=args.jobs,
    )
    from orchestrator.report.build import write_report

    return str(write_report(opts))


def run_compare(argv: list[str]) -> str:
    args = compare_parser().parse_args(argv)
    from orchestrator.report.compare import write_compare

    return str(write_compare(args.sweep_a, args.sweep_b, args.out, args.fitted_on))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        path = run_compare(argv[1:]) if argv[:1] == ["compare"] else run_report(argv)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    page = "" if "--no-html" in argv else f" and {Path(path).with_suffix('.html')}"
    print(f"report written to {path}{page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
