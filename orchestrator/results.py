"""A cell's Arrow tables: the ``runs`` row (config columns, status, metrics, energy, where it
ran), its ``requests`` rows and its ``power`` samples. Built by the worker for measured cells and
by the driver for cells without a measurement (pre-launch, failed, lost), so every row of a sweep
has the same shape."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np

from orchestrator.config.fields import as_plain
from orchestrator.errors import Status
from orchestrator.store import SCHEMA_VERSION, columns_table, runs_table

if TYPE_CHECKING:
    import pyarrow as pa

    from orchestrator.energy.base import PowerTrace
    from orchestrator.grid import Cell
    from orchestrator.metrics import RequestRecord

WORKER_COLUMNS = ("host", "node_id", "ray_gpu_ids", "assigned_resources")
EXTRA_COLUMNS = (("quantization_method", "vllm_quantization_method"), ("linear_kernel", "vllm_linear_kernel"))
"""(runs column, key of the engine's extra) pairs: what the engine reports it ran, as columns."""
ENDPOINT_COLUMNS = (("prompt_mode", "endpoint_prompt_mode"), ("token_times_source", "endpoint_token_times"),
                    ("request_dialect", "endpoint_request_dialect"),
                    ("n_prompt_tokens_mismatch", "endpoint_prompt_tokens_mismatch"))
"""The same for ``engine=endpoint``'s modes, set only where the extra has them (null elsewhere)."""


def config_columns(cell: "Cell", sweep: str) -> Dict:
    """The config columns of a cell's ``runs`` row (``config_json``: every field of its config)."""
    cfg = cell.config
    wl = cfg.workload
    return {
        "cell_id": cell.cell_id,
        "sweep": sweep,
        "schema_version": SCHEMA_VERSION,
        "engine_requested": cfg.engine.name,
        "model": cfg.model.name,
        "quantization": cfg.quantization.name,
        "gpu": cfg.gpu.name,
        "accelerator_type": cfg.gpu.accelerator_type,
        "batch_size": int(cfg.batch_size),
        "workload": wl.name,
        "arrival": wl.arrival.value,
        "repeat": int(cfg.repeat),
        "seed": int(wl.seed),
        "input_tokens_mean_cfg": float(wl.input.mean_tokens),
        "output_tokens_mean_cfg": float(wl.output.mean_tokens),
        "config_json": json.dumps(as_plain(cfg), sort_keys=True),
    }


def extra_columns(extra: Dict) -> Dict:
    """The ``EXTRA_COLUMNS`` of a runs row from an engine's extra (None where it has no key), and
    the ``ENDPOINT_COLUMNS`` it has."""
    out = {column: extra.get(key) for column, key in EXTRA_COLUMNS}
    out.update({column: extra[key] for column, key in ENDPOINT_COLUMNS if key in extra})
    return out


def status_row(cell: "Cell", sweep: str, status: Status, error: str, attempts: int = 0,
               extra: Optional[Dict] = None) -> Dict:
    """A row for a cell that produced no measurement (pre-launch or failed)."""
    now = time.time()
    row = config_columns(cell, sweep)
    row.update(status=Status(status).value, error=error, attempts=attempts, engine=cell.engine,
               engine_reason=cell.engine_reason, started_unix_s=now, finished_unix_s=now)
    row.update(extra or {})
    return row


def status_tables(cell: "Cell", sweep: str, status: Status, error: str, attempts: int = 0,
                  extra: Optional[Dict] = None) -> Dict[str, "pa.Table"]:
    return {"runs": runs_table([status_row(cell, sweep, status, error, attempts, extra)])}


def request_columns(cell_id: str, recs: List["RequestRecord"], t1: float) -> Dict:
    """The ``requests`` columns (TTFT from the scheduled arrival; TPOT over output tokens - 1)."""
    ok = np.array([r.status == "ok" for r in recs])
    arr = np.array([r.arrival_s for r in recs], dtype=float)
    first = np.array([r.first_token_s for r in recs], dtype=float)
    end = np.array([r.end_s for r in recs], dtype=float)
    out = np.array([r.output_tokens for r in recs], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (end - first) / (out - 1) * 1e3, np.nan)
    return {
        "cell_id": [cell_id] * len(recs),
        "request_index": [r.index for r in recs],
        "phase": [r.phase for r in recs],
        "batch_index": [r.batch_index for r in recs],
        "scheduled_arrival_s": arr,
        "send_s": np.array([r.send_s for r in recs], dtype=float),
        "first_token_s": first,
        "end_s": end,
        "n_token_times": [0 if r.token_times_s is None else len(r.token_times_s) for r in recs],
        "input_tokens": [r.input_tokens for r in recs],
        "output_tokens": out,
        "requested_output_tokens": [r.requested_output_tokens for r in recs],
        "ttft_ms": np.where(ok, (first - arr) * 1e3, np.nan),
        "tpot_ms": np.where(ok, tpot, np.nan),
        "e2e_ms": np.where(ok, (end - arr) * 1e3, np.nan),
        "drained": end > t1,
        "status": [r.status for r in recs],
        "error": [r.error for r in recs],
        "prompt_hash": [r.prompt_hash or None for r in recs],
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
    """J/request and J/1k output tokens from the window's energy (gross and net), in place."""
    n_req = row.get("n_requests_completed_in_window") or 0
    n_tok = row.get("output_tokens_in_window") or 0
    for src, per_req, per_tok in (
        ("energy_j", "energy_per_request_j", "energy_per_1k_output_tokens_j"),
        ("net_energy_j", "net_energy_per_request_j", "net_energy_per_1k_output_tokens_j"),
    ):
        e = row.get(src)
        row[per_req] = e / n_req if e is not None and n_req else None
        row[per_tok] = e / n_tok * 1e3 if e is not None and n_tok else None


def measured_tables(row: Dict, cell_id: str, records: List["RequestRecord"], trace: "PowerTrace",
                    t0_s: float, t1_s: float) -> Dict[str, "pa.Table"]:
    return {
        "runs": runs_table([row]),
        "requests": columns_table("requests", request_columns(cell_id, records, t1_s)),
        "power": columns_table("power", power_columns(cell_id, trace, t0_s, t1_s)),
    }


def with_stop_report(tables: Dict[str, "pa.Table"], report: Dict) -> Dict[str, "pa.Table"]:
    """``tables`` with what ``engine.stop()`` found added to the runs row's ``engine_extra``."""
    extra = json.loads(tables["runs"].column("engine_extra")[0].as_py() or "{}")
    extra["stop"] = report
    return _with_runs_value(tables, "engine_extra", json.dumps(extra, sort_keys=True, default=str))


def with_error_note(tables: Dict[str, "pa.Table"], note: str) -> Dict[str, "pa.Table"]:
    """``tables`` with ``note`` appended to the runs row's ``error`` (on its own line)."""
    error = (tables["runs"].column("error")[0].as_py() or "") + f"\n({note})"
    return _with_runs_value(tables, "error", error)


def _with_runs_value(tables: Dict[str, "pa.Table"], column: str, value) -> Dict[str, "pa.Table"]:
    """``tables`` with the one-row runs table's ``column`` replaced by ``value``."""
    import pyarrow as pa

    runs = tables["runs"]
    col = runs.schema.get_field_index(column)
    field = runs.schema.field(col)
    return {**tables, "runs": runs.set_column(col, field, pa.array([value], field.type))}
