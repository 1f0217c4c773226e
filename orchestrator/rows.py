"""The config and status columns of a ``runs`` row, shared by workers (measured cells) and the
driver (pre-launch and failed cells), so every row of a sweep has the same shape."""
from __future__ import annotations

import time
from typing import Dict, Mapping, Optional

from orchestrator.store import SCHEMA_VERSION, config_json, runs_table


def config_columns(cell_id: str, config: Mapping, sweep: str) -> Dict:
    wl = config["workload"]
    return {
        "cell_id": cell_id,
        "sweep": sweep,
        "schema_version": SCHEMA_VERSION,
        "engine_requested": config["engine"]["name"],
        "model": config["model"]["name"],
        "quantization": config["quantization"]["name"],
        "gpu": config["gpu"]["name"],
        "accelerator_type": config["gpu"]["accelerator_type"],
        "batch_size": int(config["batch_size"]),
        "workload": wl["name"],
        "arrival": wl["arrival"],
        "repeat": int(config["repeat"]),
        "seed": int(wl["seed"]),
        "input_tokens_mean_cfg": float(wl["input"]["mean_tokens"]),
        "output_tokens_mean_cfg": float(wl["output"]["mean_tokens"]),
        "config_json": config_json(config),
    }


def status_row(
    cell_id: str,
    config: Mapping,
    sweep: str,
    status: str,
    error: str,
    attempts: int = 0,
    engine: Optional[str] = None,
    engine_reason: str = "",
    extra: Optional[Dict] = None,
) -> Dict:
    """A row for a cell that produced no measurement (pre-launch or failed)."""
    now = time.time()
    row = config_columns(cell_id, config, sweep)
    row.update(status=status, error=error, attempts=attempts, engine=engine, engine_reason=engine_reason,
               started_unix_s=now, finished_unix_s=now)
    row.update(extra or {})
    return row


def status_tables(*args, **kwargs) -> Dict:
    return {"runs": runs_table([status_row(*args, **kwargs)])}
