"""The lines a search prints when it ends: its pick (or why there is none) and what it cost."""
from __future__ import annotations

from collections import Counter
from typing import List, Sequence

from orchestrator.search.record import SearchRecord


def _params(params: Sequence[Sequence[str]]) -> str:
    return " ".join(f"{k}={v}" for k, v in params) or "(the one configuration)"


def ruled_out(record: SearchRecord) -> str:
    """'3 saturated, 2 ttft_slo' over the distinct cells of the trials."""
    seen = {t.cell_id: t for t in record.trials}
    counts = Counter(r for t in seen.values() for r in t.reasons)
    return ", ".join(f"{n} {r}" for r, n in counts.most_common()) or "none"


def cost_line(record: SearchRecord) -> str:
    n, grid = record.cells_launched, record.grid_launchable_cells
    share = f"{100 * n / grid:.0f}%" if grid else "-"
    return (f"{n} of the grid's {grid} launchable cells measured or read ({share}), {max(0, grid - n)} saved; "
            f"{len(record.trials)} trials in {record.rounds} rounds; stopped: {record.stop_reason}")


def answer_lines(record: SearchRecord) -> List[str]:
    slo = f"p99 TTFT <= {record.ttft_p99_slo_ms:g} ms, p99 TPOT <= {record.tpot_p99_slo_ms:g} ms, unsaturated"
    head = f"search {record.name} ({record.kind})"
    if record.pick is None:
        lines = [f"{head}: no candidate meets {slo}; ruled out: {ruled_out(record)}"]
    else:
        p = record.pick
        what = (f"{p.value:.4g} {record.value_name} ({record.objective})" if record.kind == "energy_slo"
                else f"{p.value:g} {record.value_name} at {p.energy_per_request_j:.4g} J/request ({record.objective})")
        note = "confirmed by repeats" if p.confirmed else "not confirmed by a repeat"
        lines = [f"{head}: pick {_params(p.params)}: {what}, {note}; within {slo}"]
    lines.append(f"{head}: {cost_line(record)}")
    if record.headroom is not None:
        lines += [f"headroom of the pick: {line.split(': ', 1)[1]}" for line in answer_lines(record.headroom)[:1]]
    return lines
