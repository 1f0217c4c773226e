"""The report's section on where the GPU time went: the sweep's duty and one row per engine start
with its phases (``analysis.gpu_time``)."""
from __future__ import annotations

from typing import Dict

import pandas as pd

from orchestrator.analysis import format as fmt
from orchestrator.report.markdown import Col, col, heading, para, table

TITLE = "GPU time: engine starts and duty"


def _phase(column: str) -> Col:
    return Col(column[:-2].replace("_", " "), lambda r: fmt.num(getattr(r, column)))


COLS = [
    col("first cell", "first_cell", "text"), col("engine", "engine", "text"), col("GPU", "gpu", "text"),
    col("cells", "cells", "batch"), col("windows s", "window_s"), col("cell walls s", "cell_wall_s"),
    col("start s", "engine_start_s"),
    Col("frontend", lambda r: fmt.num(r.frontend_s) + (" (spare)" if r.from_spare is True else "")),
    _phase("core_boot_s"), _phase("model_setup_s"),
    Col("compile", lambda r: fmt.num(r.compile_s) + (" (cached)" if r.compile_cached is True else "")),
    _phase("warmup_s"), _phase("init_other_s"), _phase("ready_s"),
]


def section(starts: pd.DataFrame, duty: Dict[str, Dict]) -> list[str]:
    """The section's lines (none when no cell was measured by a worker: e.g. a store of old rows)."""
    if starts.empty:
        return []
    out = heading(2, TITLE)
    for name, figures in duty.items():
        o = figures["overall"]
        share = f"{100 * o['duty']:.1f}%" if o["duty"] is not None else fmt.MISSING
        out += para(f"Sweep `{name}`: {o['cells_ok']} ok cells of {o['cells']} measured on {o['engine_starts']} engine "
                    f"starts; measured windows {o['window_s']:.0f} s of {o['gpu_held_s']:.0f} s GPU-held (engine starts "
                    f"{o['engine_start_s']:.0f} s + cell walls {o['cell_wall_s']:.0f} s): **GPU duty {share}** — an upper bound (engine stops and "
                    "the scheduling between tasks are not recorded).")
    vllm = starts[starts["total_s"].notna()]
    if not vllm.empty:
        median = vllm[["total_s", "frontend_s", "core_boot_s", "compile_s"]].median()
        out += para(f"{len(vllm)} vLLM starts took {fmt.num(median['total_s'])} s (median) from launch to ready: the "
                    f"frontend {fmt.num(median['frontend_s'])} s (imports, config, up to the engine-core process), the "
                    f"engine core's boot {fmt.num(median['core_boot_s'])} s, torch.compile "
                    f"{fmt.num(median['compile_s'])} s ({int((vllm['compile_cached'] == True).sum())} of "  # noqa: E712
                    f"{len(vllm)} served by the compile cache; {int((vllm['from_spare'] == True).sum())} launched in a "  # noqa: E712
                    "spare process, its imports done: `(spare)`). Seconds, one row per start, oldest first (phases "
                    "from vLLM's log: `orchestrator/engines/vllm/start_phases.py`).")
    return out + table(starts, COLS)
