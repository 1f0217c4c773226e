"""Markdown building blocks: tables from DataFrames, headings, the † (simulated) legend.

A table is described by ``Col`` entries: a header (with its unit) and a function of the row
(a namedtuple from ``itertuples``) returning the cell text. Pipes in text are escaped.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.series_labels import series_suffix


@dataclass(frozen=True)
class Col:
    """One table column: ``header`` and ``cell(row) -> str``."""

    header: str
    cell: Callable


def col(header: str, column: str, kind: str = "num") -> Col:
    """A column from a DataFrame column: kind ``num`` | ``pct`` | ``ratio`` | ``batch`` | ``text``."""
    formatter = {"num": fmt.num, "pct": fmt.pct, "ratio": fmt.ratio, "batch": fmt.batch,
                 "text": lambda v: "" if fmt.is_missing(v) else str(v)}[kind]
    return Col(header, lambda r: formatter(getattr(r, column)))


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(df: pd.DataFrame, cols: list[Col]) -> list[str]:
    """Markdown lines of ``df`` rendered through ``cols`` (an empty list for an empty frame)."""
    if df is None or df.empty:
        return []
    return rows_table(df.itertuples(index=False), cols)


def rows_table(rows: Iterable, cols: list[Col]) -> list[str]:
    """Markdown lines of ``rows`` (any objects ``cols`` read, e.g. dataclasses) rendered through
    ``cols`` (an empty list for no rows)."""
    lines = [f"| {' | '.join(_escape(c.cell(row)) for c in cols)} |" for row in rows]
    if not lines:
        return []
    return ["| " + " | ".join(c.header for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"] + lines + [""]


def heading(level: int, text: str) -> list[str]:
    return ["#" * level + " " + text, ""]


def para(*sentences: str) -> list[str]:
    text = " ".join(s for s in sentences if s)
    return [text, ""] if text else []


def bullets(items: Iterable[str]) -> list[str]:
    out = [f"- {i}" for i in items if i]
    return out + [""] if out else []


def image(path: str, alt: str) -> list[str]:
    return [f"![{alt}]({path})", ""]


SIM_MARK = " †"
SIM_LEGEND = ("† simulated: modeled by the simulated engine's roofline model (throughput, latency and energy), "
              "not measured on a GPU.")


def dagger(row) -> str:
    """`` †`` when the row is simulated (its ``simulated`` attribute is true), else ""."""
    value = getattr(row, "simulated", False)
    return SIM_MARK if not fmt.is_missing(value) and bool(value) else ""


def sim_legend(df: pd.DataFrame | None) -> list[str]:
    """The † legend line when any row of ``df`` is simulated (nothing otherwise)."""
    if df is None or df.empty or "simulated" not in df or not df["simulated"].fillna(False).astype(bool).any():
        return []
    return para(SIM_LEGEND)


def series_label(row) -> str:
    """``model/quantization`` (+ what tells its variant apart) with † when the point is simulated."""
    return f"{row.model}/{row.quantization}" + series_suffix(str(row.series), row.model, row.quantization,
                                                            row.gpu) + dagger(row)
