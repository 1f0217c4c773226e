"""Section 2's "Request lengths": per ok cell, the p50 / p90 / max of its measured ok requests'
input, output and (where the engine reported them) cached tokens (``request_lengths.length_table``)."""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.analysis.prefix_cache import PREFIX_CACHING
from orchestrator.analysis.request_lengths import INPUT_TOKENS, N_MEASURED_OK, OUTPUT_TOKENS, STATS, stat_columns
from orchestrator.report.analyse import Analysis
from orchestrator.report.markdown import Col, col, heading, para, series_label, sim_legend, table
from orchestrator.store.schema import CACHED_TOKENS, PREFIX_CACHE_HIT_RATE

SHORT = {INPUT_TOKENS: "input", OUTPUT_TOKENS: "output", CACHED_TOKENS: "cached"}


def _caching(value) -> str:
    return fmt.MISSING if value is None or fmt.is_missing(value) else ("on" if value else "off")


def _stats(tokens: str) -> list[Col]:
    return [col(f"{SHORT[tokens]} tok {name}", c) for (name, _), c in zip(STATS, stat_columns(tokens))]


def length_cols(lengths: pd.DataFrame, name: Callable[[str], str]) -> list[Col]:
    """The table's columns: the repeat where cells repeat, cached tokens and the prefix cache only
    where some cell has them (no cell id: section 2's detail names each cell once)."""
    cached = lengths[stat_columns(CACHED_TOKENS)].notna().any().any()
    caching = lengths[PREFIX_CACHING].eq(True).any()
    hits = PREFIX_CACHE_HIT_RATE in lengths and lengths[PREFIX_CACHE_HIT_RATE].notna().any()
    cols = [Col("workload", lambda r: name(r.workload)), col("GPU", "gpu", "text"), Col("series", series_label),
            col("BS", "batch_size", "batch")]
    cols += [col("repeat", "repeat", "batch")] if lengths["repeat"].nunique() > 1 else []
    cols += [Col("prefix caching", lambda r: _caching(getattr(r, PREFIX_CACHING)))] if caching else []
    cols += [col("requests", N_MEASURED_OK, "batch")] + _stats(INPUT_TOKENS) + _stats(OUTPUT_TOKENS)
    cols += _stats(CACHED_TOKENS) if cached else []
    cols += [Col("prefix cache hit %", lambda r: fmt.num(getattr(r, PREFIX_CACHE_HIT_RATE) * 100.0))] if hits else []
    return cols


def lengths_section(a: Analysis) -> list[str]:
    out = heading(3, "Request lengths")
    lengths = a.lengths.sort_values(["workload", "gpu", "series", "batch_size", "repeat"], kind="stable")
    if lengths.empty:
        return []
    out += para("Per ok cell (repeats apart), over its measured ok requests: the 50th and 90th percentiles (linear "
                "interpolation) and the largest input and output lengths in tokens"
                + (", and of the prompt tokens the engine served from its prefix cache (cached; — where the engine "
                   "did not report them)" if lengths[stat_columns(CACHED_TOKENS)].notna().any().any() else "")
                + ". The HTML page plots each cell's distributions in its drill-down.")
    return out + sim_legend(lengths) + table(lengths, length_cols(lengths, a.workload_name))
