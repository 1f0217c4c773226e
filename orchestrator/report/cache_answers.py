"""Key answer "What the prefix cache saves": per pair of cells identical but for prefix caching
(``analysis.prefix_cache``), off → on: the on cell's hit rate, gross J per request (and its
change), J per 1k output and prompt tokens, TTFT p50 and p99. report.md shows the pairs as a
table (``savings_table``), the HTML page as sentences (``saving_sentence``)."""
from __future__ import annotations

from collections.abc import Callable

from orchestrator.analysis import format as fmt
from orchestrator.analysis.prefix_cache import CacheSaving
from orchestrator.report.markdown import SIM_MARK, Col, rows_table

LEAD = ("**What the prefix cache saves** (pairs of cells whose configs differ only in the engine's "
        "enable_prefix_caching: off → on).")
NOTE = ("J/request compares whole windows — each cell's gross energy over its measured window, idle time "
        "included, ÷ the requests' worth of output tokens emitted in it — and the hit rate is the one measured in "
        "the on cell (cached ÷ prompt tokens of its measured ok requests). The two cells of a pair send the same "
        "prompts on the same schedule; multi-turn sessions may fit more turns in the window with the cache on.")


def _arrow(off: float, on: float, unit: str = "") -> str:
    return f"{fmt.num(off)} → {fmt.num(on)}{unit}"


def _hit(s: CacheSaving) -> str:
    return fmt.MISSING if fmt.is_missing(s.hit_rate) else f"{fmt.num(s.hit_rate * 100.0)}%"


def saving_sentence(s: CacheSaving, workload: str) -> str:
    """One pair in words; ``workload``: how it is named inside parentheses."""
    off, on = s.off, s.on
    return (f"**{s.series}** at {fmt.num(s.offered_rate_rps)} req/s ({workload}), BS {s.batch_size}: hit rate "
            f"{_hit(s)}; J/request {_arrow(off.energy_per_request_j, on.energy_per_request_j)} "
            f"({fmt.pct(s.energy_per_request_change_pct)}); J/1k output tokens "
            f"{_arrow(off.energy_per_1k_output_tokens_j, on.energy_per_1k_output_tokens_j)}; J/1k prompt tokens "
            f"{_arrow(off.energy_per_1k_prompt_tokens_j, on.energy_per_1k_prompt_tokens_j)}; TTFT p50 "
            f"{_arrow(off.ttft_p50_ms, on.ttft_p50_ms, ' ms')}, p99 {_arrow(off.ttft_p99_ms, on.ttft_p99_ms, ' ms')}."
            f"{SIM_MARK if s.simulated else ''}")


def _columns(name: Callable[[str], str]) -> list[Col]:
    return [
        Col("workload", lambda s: name(s.workload)),
        Col("series", lambda s: s.series + (SIM_MARK if s.simulated else "")),
        Col("offered req/s", lambda s: fmt.num(s.offered_rate_rps)), Col("BS", lambda s: str(s.batch_size)),
        Col("hit % (on)", lambda s: _hit(s).rstrip("%")),
        Col("J/request off → on", lambda s: _arrow(s.off.energy_per_request_j, s.on.energy_per_request_j)),
        Col("Δ J/request", lambda s: fmt.pct(s.energy_per_request_change_pct)),
        Col("J/1k output tok off → on",
            lambda s: _arrow(s.off.energy_per_1k_output_tokens_j, s.on.energy_per_1k_output_tokens_j)),
        Col("J/1k prompt tok off → on",
            lambda s: _arrow(s.off.energy_per_1k_prompt_tokens_j, s.on.energy_per_1k_prompt_tokens_j)),
        Col("TTFT p50 (ms) off → on", lambda s: _arrow(s.off.ttft_p50_ms, s.on.ttft_p50_ms)),
        Col("TTFT p99 (ms) off → on", lambda s: _arrow(s.off.ttft_p99_ms, s.on.ttft_p99_ms)),
        Col("cells off / on", lambda s: f"{s.off.cell_id[:8]} / {s.on.cell_id[:8]}"),
    ]


def savings_table(savings: list[CacheSaving], name: Callable[[str], str]) -> list[str]:
    """The Markdown table of the pairs; ``name``: how a workload is named."""
    return rows_table(savings, _columns(name))
