"""The sweep report: ``python -m orchestrator.report <sweep dir>`` (see ``__main__``).

Library use::

    from orchestrator.report import ReportOptions, write_report, write_compare
    write_report(ReportOptions("outputs/full"))   # -> outputs/full/report/report.md (baseline: smallest BS)
    write_compare("outputs/t4", "outputs/a800", out="cmp")           # -> cmp/compare.md

Modules: ``options`` (ReportOptions), ``analyse`` (every table once), ``header``, ``answers``
and ``cache_answers`` (the key answers, what the prefix cache saves among them), ``summary``
(section 1), ``results`` (2, 3), ``repeats`` (2's repeatability), ``lengths`` (2's request
lengths), ``models`` (4, 5, 6), ``decisions`` (7, 8), ``figures`` (9),
``appendix``, ``compare``, ``markdown`` (table rendering), ``build`` (writes the files);
``whole_grid`` (an active sweep's every cell, measured or predicted: its own section and key answer).
"""
from importlib import import_module

_API = {"ReportOptions": "options", "write_report": "build", "render": "build", "write_compare": "compare"}
__all__ = [
    "ReportOptions",
    "render",
    "write_compare",
    "write_report",
]


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
