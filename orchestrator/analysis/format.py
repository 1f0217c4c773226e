"""Number formatting shared by generated sentences and report tables (plain text, no units).

``num``: 4 significant figures at most, thousands separated (``5,781``, ``548.2``, ``18.09``,
``0.612``; whole numbers below 1000 without decimals: ``20``); ``pct``: signed with one decimal
(``+348.5%``); ``ratio``: ``3.5×``; ``gpus``: the NVML UUIDs of a ``gpu_uuid`` value (one GPU, or
several comma-separated) shortened to ``GPU-1d8a997f…``. Missing values (None/NaN) become ``—``.
"""
from __future__ import annotations

import math

MISSING = "—"


def is_missing(x) -> bool:
    if x is None:
        return True
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def num(x, digits: int | None = None) -> str:
    """A number with sensible precision (or ``digits`` decimals when given)."""
    if is_missing(x):
        return MISSING
    x = float(x)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if digits is not None:
        return f"{x:,.{digits}f}"
    a = abs(x)
    if a >= 1000 or a == 0 or (a >= 1 and x.is_integer()):
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:,.1f}"
    if a >= 1:
        return f"{x:,.2f}"
    return f"{x:.3g}"


def pct(x) -> str:
    """A signed percentage, one decimal."""
    return MISSING if is_missing(x) else f"{float(x):+,.1f}%"


def ratio(x) -> str:
    """A multiplier, e.g. ``3.5×``."""
    return MISSING if is_missing(x) else f"{float(x):,.2f}×" if abs(float(x)) < 10 else f"{float(x):,.1f}×"


def batch(x) -> str:
    """A batch size (integer when whole)."""
    if is_missing(x):
        return MISSING
    return str(int(x)) if float(x).is_integer() else num(x)


def gpu_uuids(value) -> list[str]:
    """The NVML UUIDs in a ``gpu_uuid`` value ("GPU-a" or, for a cell measured over several GPUs,
    "GPU-a,GPU-b"); none for a missing or empty value."""
    return [] if is_missing(value) else [u for u in str(value).split(",") if u]


def gpus(value) -> str:
    """``gpu_uuid`` shortened for text: ``GPU-1d8a997f…`` (several joined with ``+``)."""
    return "+".join(f"{u[:12]}…" for u in gpu_uuids(value)) or MISSING
