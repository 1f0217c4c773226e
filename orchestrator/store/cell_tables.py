"""A cell's ``runs`` row: its config columns and status, for cells the worker measured
(``worker.tables`` adds the metrics, energy, ``requests`` rows and ``power`` samples) and for cells
without a measurement that the driver writes (pre-launch, failed, lost), so every row of a sweep
has the same shape; and edits of a cell's one-row runs table."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Dict, Optional

from orchestrator.config.fields import as_plain
from orchestrator.errors import Status
from orchestrator.store.schema import (
    SCHEMA_VERSION,
    START_COMPILE_CACHED,
    START_PHASE_COLUMNS,
    START_PHASES,
    runs_table,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from orchestrator.core.cell import Cell

WORKER_COLUMNS = ("host", "node_id", "ray_gpu_ids", "assigned_resources")
EXTRA_COLUMNS = (("quantization_method", "vllm_quantization_method"), ("linear_kernel", "vllm_linear_kernel"),
                 ("prefix_cache_reset", "prefix_cache_reset"))
"""(runs column, key of the engine's extra) pairs: what the engine reports it ran, as columns."""
ENDPOINT_COLUMNS = (("prompt_mode", "endpoint_prompt_mode"), ("token_times_source", "endpoint_token_times"),
                    ("request_dialect", "endpoint_request_dialect"),
                    ("n_prompt_tokens_mismatch", "endpoint_prompt_tokens_mismatch"), ("api", "api"),
                    ("token_count_source", "token_count_source"), ("chat_template_tokens", "chat_template_tokens"),
                    ("output_lengths_forced", "output_lengths_forced"))
"""The same for ``engine=endpoint``'s modes, set only where the extra has them (null elsewhere)."""


def config_columns(cell: "Cell", sweep: str) -> Dict:
    """The config columns of a cell's ``runs`` row (``config_json``: every field of its config)."""
    cfg = cell.config
    wl = cfg.workload
    mean_in, mean_out = wl.mean_lengths()
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
        "tensor_parallel_size": int(cfg.tensor_parallel_size),  # GPUs the cell spans (null in older files: 1)
        "workload": wl.name,
        "arrival": wl.arrival.value,
        "workload_source": wl.source.value,
        "repeat": int(cfg.repeat),
        "seed": wl.seed_for(cfg.repeat),  # the seed the cell's arrivals and lengths were drawn with
        "input_tokens_mean_cfg": mean_in,
        "output_tokens_mean_cfg": mean_out,
        "config_json": json.dumps(as_plain(cfg), sort_keys=True),
    }


def extra_columns(extra: Dict) -> Dict:
    """The ``EXTRA_COLUMNS`` of a runs row from an engine's extra (None where it has no key), the
    ``ENDPOINT_COLUMNS`` it has, and, where it reports them, its start's phases (``START_PHASES``
    -> the ``start_*`` columns; None for a phase it lacks)."""
    out = {column: extra.get(key) for column, key in EXTRA_COLUMNS}
    out.update({column: extra[key] for column, key in ENDPOINT_COLUMNS if key in extra})
    phases = extra.get(START_PHASES)
    if isinstance(phases, dict):
        out.update({c: phases.get(c[len("start_"):]) for c in (*START_PHASE_COLUMNS, START_COMPILE_CACHED)})
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
