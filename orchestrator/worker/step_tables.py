"""A measured cell's steps and the energy attributed to them and to its requests, as table
columns: the engine's own steps (``WindowRun.steps``) or, for an engine that records none, those
reconstructed from its requests' token times (``client.steps``); attributed by
``energy.attribution`` where the window's energy is known."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from orchestrator.client.steps import reconstruct_steps
from orchestrator.core.steps import StepTimeline
from orchestrator.energy.attribution import Attribution, RooflineSplit, attribute
from orchestrator.store.schema import ENERGY_J, ENERGY_OUTSIDE_STEPS_J, PREFILL_ENERGY_SHARE, REQUEST_ENERGY_COLUMNS, STEP_SOURCE

if TYPE_CHECKING:
    from orchestrator.client.metrics import RequestRecord, WindowRun
    from orchestrator.config.root import CellConfig
    from orchestrator.energy.base import PowerTrace


def cell_steps(cfg: "CellConfig", wr: "WindowRun", trace: "PowerTrace", row: Dict,
               idle_power_w: Optional[float]) -> Tuple[Optional[StepTimeline], Optional[Attribution]]:
    """The cell's steps and, where its window's energy is known, their attribution."""
    steps = wr.steps if wr.steps is not None else reconstruct_steps(wr.records)
    if steps is None or not len(steps) or row.get(ENERGY_J) is None or trace.source == "none" or len(trace) < 2:
        return steps, None
    return steps, attribute(steps, trace, wr.window_start_s, wr.window_end_s, float(row[ENERGY_J]), idle_power_w,
                            RooflineSplit.of(cfg))


def step_run_columns(steps: Optional[StepTimeline], att: Optional[Attribution]) -> Dict:
    """The runs row's step columns (null without steps or without attribution)."""
    return {
        STEP_SOURCE: steps.source if steps is not None else None,
        "n_steps": len(steps) if steps is not None else None,
        "energy_in_steps_j": float(att.step_energy_j.sum()) if att else None,
        ENERGY_OUTSIDE_STEPS_J: att.outside_steps_j if att else None,
        "net_energy_outside_steps_j": att.net_outside_steps_j if att else None,
        PREFILL_ENERGY_SHARE: att.prefill_energy_share if att else None,
    }


def request_energy_columns(records: List["RequestRecord"], att: Optional[Attribution]) -> Dict[str, List]:
    """Per request (in ``records``' order) its attributed energy (None where it is in no step)."""
    if att is None:
        return {c: [None] * len(records) for c in REQUEST_ENERGY_COLUMNS}
    where = {int(i): k for k, i in enumerate(att.request_index.tolist())}
    net_known = att.net_outside_steps_j is not None
    values = {
        "energy_prefill_j": att.prefill_j, "energy_decode_j": att.decode_j, "energy_j": att.prefill_j + att.decode_j,
        "net_energy_prefill_j": att.net_prefill_j, "net_energy_decode_j": att.net_decode_j,
        "net_energy_j": att.net_prefill_j + att.net_decode_j,
    }
    out: Dict[str, List] = {}
    for name in REQUEST_ENERGY_COLUMNS:
        known = net_known or not name.startswith("net_")
        out[name] = [float(values[name][where[r.index]]) if known and r.index in where else None for r in records]
    return out


def steps_columns(cell_id: str, steps: Optional[StepTimeline], att: Optional[Attribution]) -> Dict:
    """The ``steps`` table's columns (empty without steps)."""
    if steps is None:
        return {"cell_id": []}
    n = len(steps)
    cuts = steps.offsets[1:-1]
    return {
        "cell_id": [cell_id] * n,
        "step_index": np.arange(n),
        "start_s": steps.start_s,
        "end_s": steps.end_s,
        "prefill_tokens": steps.prefill_tokens,
        "decode_tokens": steps.decode_tokens,
        "n_requests": np.diff(steps.offsets),
        "energy_j": att.step_energy_j if att else [None] * n,
        "net_energy_j": att.step_net_energy_j if att and att.net_outside_steps_j is not None else [None] * n,
        "prefill_share": att.step_prefill_share if att else [None] * n,
        STEP_SOURCE: [steps.source] * n,
        "request_index": [a.tolist() for a in np.split(steps.request_index, cuts)],
        "request_prefill_tokens": [a.tolist() for a in np.split(steps.request_prefill, cuts)],
        "request_decode_tokens": [a.tolist() for a in np.split(steps.request_decode, cuts)],
    }
