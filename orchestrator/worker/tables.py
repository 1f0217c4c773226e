"""A measured cell's Arrow tables: its ``runs`` row (with J/request and J/1k output tokens), its
``requests`` rows (TTFT from the scheduled arrival, TPOT over output tokens - 1) and its ``power``
samples (times from the window's start). Built on the worker from what the engine and the
sampler returned."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np

from orchestrator.store.schema import (
    E2E_MS,
    ENERGY_J,
    CACHED_TOKENS,
    ENERGY_PER_1K_OUTPUT_TOKENS_J,
    ENERGY_PER_1K_PROMPT_TOKENS_J,
    ENERGY_PER_REQUEST_J,
    NET_ENERGY_J,
    NET_ENERGY_PER_1K_OUTPUT_TOKENS_J,
    NET_ENERGY_PER_REQUEST_J,
    OUTPUT_TOKENS_IN_WINDOW,
    OUTPUT_TOKENS_PER_REQUEST_MEAN,
    PROMPT_TOKENS_IN_WINDOW,
    TPOT_MS,
    SEND_LAG_MS,
    TTFT_MS,
    columns_table,
    runs_table,
)

from orchestrator.worker.step_tables import request_energy_columns, steps_columns

if TYPE_CHECKING:
    import pyarrow as pa

    from orchestrator.core.steps import StepTimeline
    from orchestrator.energy.attribution import Attribution

    from orchestrator.client.metrics import RequestRecord
    from orchestrator.energy.base import PowerTrace


def request_columns(cell_id: str, recs: List["RequestRecord"], t1: float) -> Dict:
    """The ``requests`` columns (TTFT from the scheduled arrival; TPOT over output tokens - 1)."""
    ok = np.array([r.status == "ok" for r in recs])
    arr = np.array([r.arrival_s for r in recs], dtype=float)
    first = np.array([r.first_token_s for r in recs], dtype=float)
    end = np.array([r.end_s for r in recs], dtype=float)
    send = np.array([r.send_s for r in recs], dtype=float)
    out = np.array([r.output_tokens for r in recs], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (end - first) / (out - 1) * 1e3, np.nan)
    return {
        "cell_id": [cell_id] * len(recs),
        "request_index": [r.index for r in recs],
        "phase": [r.phase for r in recs],
        "batch_index": [r.batch_index for r in recs],
        "scheduled_arrival_s": arr,
        "send_s": send,
        SEND_LAG_MS: (send - arr) * 1e3,
        "first_token_s": first,
        "end_s": end,
        "n_token_times": [0 if r.token_times_s is None else len(r.token_times_s) for r in recs],
        "input_tokens": [r.input_tokens for r in recs],
        "output_tokens": out,
        "requested_output_tokens": [r.requested_output_tokens for r in recs],
        TTFT_MS: np.where(ok, (first - arr) * 1e3, np.nan),
        TPOT_MS: np.where(ok, tpot, np.nan),
        E2E_MS: np.where(ok, (end - arr) * 1e3, np.nan),
        "drained": end > t1,
        "status": [r.status for r in recs],
        "error": [r.error for r in recs],
        "prompt_hash": [r.prompt_hash or None for r in recs],
        CACHED_TOKENS: [r.cached_tokens for r in recs],
        "session": [r.session if r.session >= 0 else None for r in recs],
        "turn": [r.turn if r.session >= 0 else None for r in recs],
    }


def power_columns(cell_id: str, trace: "PowerTrace", t0_s: float, t1_s: float) -> Dict:
    """The ``power`` columns; ``t_rel_s`` from the window's start, ``in_window`` flags it."""
    ts = trace.t_ns / 1e9
    return {
        "cell_id": [cell_id] * len(trace),
        "t_ns": trace.t_ns,
        "t_rel_s": ts - t0_s,
        "power_w": trace.power_w,
        "energy_mj": trace.energy_mj,
        "util_pct": trace.util_pct,
        "memory_used_mib": trace.memory_used_mib,
        "sm_clock_mhz": trace.sm_clock_mhz,
        "temperature_c": trace.temperature_c,
        "in_window": (ts >= t0_s) & (ts <= t1_s),
    }


def per_unit_energy(row: Dict) -> None:
    """J/request, J/1k output tokens and J/1k prompt tokens from the window's energy (gross and
    net), in place.

    J/1k output tokens: the window's energy over the output tokens emitted in it (by any request:
    the GPU's work in the window). J/request: the same energy over the requests' worth of those
    tokens (output tokens in the window / mean output tokens of a measured request): in a steady
    window the requests completed in it, without their edge effects (the requests in flight at
    its end) and without counting warm-up as served. J/1k prompt tokens (gross only): the energy
    over the prompt tokens prefilled in the window, to read beside the prefix cache's hit rate
    (each of the three puts the whole window's energy on one kind of token)."""
    n_tok = row.get(OUTPUT_TOKENS_IN_WINDOW) or 0
    per_request = row.get(OUTPUT_TOKENS_PER_REQUEST_MEAN)
    n_req = n_tok / per_request if per_request and not math.isnan(per_request) else 0
    for src, per_req, per_tok in (
        (ENERGY_J, ENERGY_PER_REQUEST_J, ENERGY_PER_1K_OUTPUT_TOKENS_J),
        (NET_ENERGY_J, NET_ENERGY_PER_REQUEST_J, NET_ENERGY_PER_1K_OUTPUT_TOKENS_J),
    ):
        e = row.get(src)
        row[per_req] = e / n_req if e is not None and n_req else None
        row[per_tok] = e / n_tok * 1e3 if e is not None and n_tok else None
    e, n_prompt = row.get(ENERGY_J), row.get(PROMPT_TOKENS_IN_WINDOW) or 0
    row[ENERGY_PER_1K_PROMPT_TOKENS_J] = e / n_prompt * 1e3 if e is not None and n_prompt else None


def measured_tables(row: Dict, cell_id: str, records: List["RequestRecord"], trace: "PowerTrace",
                    t0_s: float, t1_s: float, steps: Optional["StepTimeline"] = None,
                    att: Optional["Attribution"] = None) -> Dict[str, "pa.Table"]:
    """The cell's tables: its runs row, its requests (with their attributed energy), its power
    samples and its steps (``worker.step_tables``)."""
    requests = {**request_columns(cell_id, records, t1_s), **request_energy_columns(records, att)}
    return {
        "runs": runs_table([row]),
        "requests": columns_table("requests", requests),
        "power": columns_table("power", power_columns(cell_id, trace, t0_s, t1_s)),
        "steps": columns_table("steps", steps_columns(cell_id, steps, att)),
    }
