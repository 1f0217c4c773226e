"""``write_report``: sweep -> analysis -> PNGs + report.md (+ CSV copies of the tables)."""
from __future__ import annotations

from pathlib import Path

from orchestrator.analysis.dataset import read_sweep
from orchestrator.analysis.prefix_cache import savings_frame
from orchestrator.analysis.search import read_search
from orchestrator.report import (
    answers,
    appendix,
    decisions,
    figures,
    gpu_time,
    header,
    lengths,
    model_sections,
    repeats,
    request_energy,
    result_sections,
    summary,
    whole_grid,
)
from orchestrator.report.analyse import Analysis, analyse
from orchestrator.report.html_page import write_html
from orchestrator.report.options import ReportOptions
from orchestrator.report.parallel import plot_executor
from orchestrator.report.search import search_section


def write_tables(a: Analysis, folder: Path) -> None:
    """Every section's DataFrame as CSV (full precision) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = {
        "summary": a.summary, "detail": a.detail, "repeatability": a.repeatability, "energy": a.energy,
        "roofline": a.roofline,
        "ridge_batches": a.ridge_batches, "vram": a.vram, "vram_by_batch": a.vram_by_batch, "cost": a.cost,
        "recommendations": a.recommendations, "checks": a.checks, "status": a.status, "request_lengths": a.lengths,
    }
    if not a.request_energy.empty:
        frames["request_energy"] = a.request_energy
    if a.cache_savings:
        frames["prefix_cache_savings"] = savings_frame(a.cache_savings)
    if a.whole_grid is not None:
        frames["whole_grid"] = whole_grid.csv_frame(a.whole_grid)
    if not a.engine_starts.empty:
        frames["engine_starts"] = a.engine_starts
    frames.update({f"fit_{m}": f for m, f in a.fits.items()})
    for name, frame in frames.items():
        frame.to_csv(folder / f"{name}.csv", index=False)


def render(a: Analysis, figs: dict) -> str:
    """The Markdown text of the report."""
    lines = header.header(a) + answers.section(a) + search_section(read_search(a.data.path))
    lines += whole_grid.section(a.whole_grid, a.workload_name) + summary.section(a)
    lines += result_sections.detail_section(a) + repeats.repeatability_section(a) + lengths.lengths_section(a)
    lines += request_energy.distribution_section(a) + result_sections.energy_section(a)
    lines += model_sections.scaling_section(a) + model_sections.roofline_section(a) + model_sections.vram_section(a)
    lines += decisions.cost_section(a) + decisions.recommendations_section(a)
    lines += figures.figures_section(a, figs) + gpu_time.section(a.engine_starts, a.duty)
    lines += appendix.status_section(a) + appendix.checks_section(a) + appendix.definitions_section(a)
    return "\n".join(lines).rstrip() + "\n"


def write_report(options: ReportOptions) -> Path:
    """Write ``report.md``, its PNGs, ``tables/*.csv`` and ``report.html`` to ``options.resolved_out()``; return
    the report's path. Raises ``SweepError`` for input that cannot make a report."""
    with plot_executor(options.jobs) as executor:
        data = read_sweep(options.sweep_dir)
        a = analyse(data, options)
        out = Path(options.resolved_out())
        out.mkdir(parents=True, exist_ok=True)
        pending = figures.submit_figures(a, out, executor)
        text = render(a, {name: figures.FILES[name] for name in pending})
        if options.write_csv:
            write_tables(a, out / "tables")
        if options.write_html:
            write_html(a, out)
        for future in pending.values():
            future.result()
    path = out / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
