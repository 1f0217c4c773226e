"""Runs cells on a worker: check GPU -> start engine -> idle baseline -> measured window with the
sampler on -> drain -> Arrow tables. Cells that share an engine (same engine arguments, e.g.
offline batch sizes under vLLM) run back to back on one engine start.

Everything a cell can fail with becomes a status row here (``errors.classify``); only a worker
that dies loses its cells, and the driver records those as ``worker_lost``.
"""
from __future__ import annotations

import json
import socket
import time
import traceback
from typing import Dict, Iterator, List, Mapping, Optional

import numpy as np

from orchestrator import metrics
from orchestrator.energy.base import PowerTrace, idle_power_from, window_energy
from orchestrator.engines import engine_class
from orchestrator.errors import classify
from orchestrator.rows import config_columns, status_row
from orchestrator.store import columns_table, runs_table
from orchestrator.workload import build_plan


def worker_context() -> Dict:
    """Where this task runs: node, host, Ray-assigned GPUs and resources."""
    ctx = {"host": socket.gethostname(), "node_id": None, "ray_gpu_ids": "[]", "assigned_resources": "{}"}
    try:
        import ray

        if ray.is_initialized():
            rc = ray.get_runtime_context()
            ctx["node_id"] = rc.get_node_id()
            ctx["assigned_resources"] = json.dumps(rc.get_assigned_resources(), sort_keys=True)
            ctx["ray_gpu_ids"] = json.dumps([str(g) for g in ray.get_gpu_ids()])
    except Exception:  # outside Ray (direct call in a test) there is no context
        pass
    return ctx


def make_sampler(config: Mapping, engine):
    """The sampler for a cell; None when the engine models its own power (simulator)."""
    if engine.modeled_power_source():
        return None
    from orchestrator.energy.null import NullSampler

    name = config["sampler"]["name"]
    if name == "none":
        return NullSampler("sampler=none")
    if not engine.uses_gpu:
        return NullSampler(f"engine {engine.name} ran on the CPU: no energy source")
    from orchestrator.energy.nvml import NvmlSampler

    return NvmlSampler(
        gpu_uuid=engine.gpu_uuid(),
        interval_s=config["sampler"]["interval_s"],
    )


def _request_columns(cell_id: str, recs: List[metrics.RequestRecord], t1: float) -> Dict:
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
    }


def _power_columns(cell_id: str, trace: PowerTrace, t0_s: float, t1_s: float) -> Dict:
    t = trace.t_ns
    ts = t / 1e9
    return {
        "cell_id": [cell_id] * len(trace),
        "t_ns": t,
        "t_rel_s": ts - t0_s,
        "power_w": trace.power_w,
        "energy_mj": trace.energy_mj,
        "util_pct": trace.util_pct,
        "memory_used_mib": trace.memory_used_mib,
        "sm_clock_mhz": trace.sm_clock_mhz,
        "temperature_c": trace.temperature_c,
        "in_window": (ts >= t0_s) & (ts <= t1_s),
    }


def _per_unit(row: Dict) -> None:
    """J/request and J/1k output tokens from the window's energy (gross and net)."""
    n_req = row.get("n_requests_completed_in_window") or 0
    n_tok = row.get("output_tokens_in_window") or 0
    for src, per_req, per_tok in (
        ("energy_j", "energy_per_request_j", "energy_per_1k_output_tokens_j"),
        ("net_energy_j", "net_energy_per_request_j", "net_energy_per_1k_output_tokens_j"),
    ):
        e = row.get(src)
        row[per_req] = e / n_req if e is not None and n_req else None
        row[per_tok] = e / n_tok * 1e3 if e is not None and n_tok else None


class UnitRunner:
    """Runs the cells of one Ray task on one engine start."""

    def __init__(self, unit: Mapping):
        self.unit = unit
        self.cells = unit["cells"]
        self.sweep = unit["sweep"]
        self.engine_name = unit["engine"]
        self.ctx = worker_context()
        self.idle_w: Optional[float] = None

    def run(self) -> List[Dict]:
        return list(self.results())

    def results(self) -> Iterator[Dict]:
        """One result per cell, each as soon as it exists (so a later failure loses nothing
        already measured); the last one after ``engine.stop()``, carrying its stop report."""
        first = self.cells[0]["config"]
        cls = engine_class(self.engine_name, first["workload"])
        engine = cls(first, max(c["config"]["batch_size"] for c in self.cells))
        t_start = time.monotonic()
        try:
            engine.start()
        except Exception as exc:  # a failed start fails every cell of the unit
            status, retryable = classify(exc)
            engine.stop()
            yield from (self._failure(c, status, retryable, exc) for c in self.cells)
            return
        start_s = time.monotonic() - t_start
        last = None
        try:
            for c in self.cells:
                if last is not None:
                    yield last
                try:
                    last = self._measure(engine, c, start_s)
                except Exception as exc:
                    status, retryable = classify(exc)
                    last = self._failure(c, status, retryable, exc)
        finally:
            engine.stop()
        self._attach_stop_report([last], getattr(engine, "stop_report", None))
        yield last

    @staticmethod
    def _attach_stop_report(results: List[Dict], report: Optional[Dict]) -> None:
        """Add what ``engine.stop()`` found (e.g. GPU memory freed) to the ok rows' engine_extra."""
        if not report:
            return
        import pyarrow as pa

        for res in results:
            runs = res["tables"]["runs"]
            if res["status"] != "ok":
                continue
            extra = json.loads(runs.column("engine_extra")[0].as_py() or "{}")
            extra["stop"] = report
            col = runs.schema.get_field_index("engine_extra")
            res["tables"]["runs"] = runs.set_column(col, runs.schema.field(col),
                                                    pa.array([json.dumps(extra, sort_keys=True, default=str)]))

    def _failure(self, cell: Mapping, status: str, retryable: bool, exc: BaseException) -> Dict:
        text = f"{type(exc).__name__}: {exc}"
        if status == "engine_error":
            text += "\n" + "".join(traceback.format_exception(exc))[-4000:]
        row = status_row(cell["cell_id"], cell["config"], self.sweep, status, text,
                         attempts=self.unit.get("attempt", 1), engine=self.engine_name,
                         engine_reason=self.unit.get("engine_reason", ""),
                         extra={k: self.ctx[k] for k in ("host", "node_id", "ray_gpu_ids", "assigned_resources")})
        return {"cell_id": cell["cell_id"], "status": status, "retryable": retryable,
                "tables": {"runs": runs_table([row])}}

    def _measure(self, engine, cell: Mapping, engine_start_s: float) -> Dict:
        cfg, cid = cell["config"], cell["cell_id"]
        started = time.time()
        t_wall = time.monotonic()
        plan = build_plan(cfg["workload"], cfg["batch_size"], cfg["repeat"])
        sampler = make_sampler(cfg, engine)
        idle_bounds = None
        if sampler is not None:
            sampler.start()
            if self.idle_w is None and cfg["sampler"]["name"] != "none" and engine.uses_gpu:
                a = time.monotonic_ns()
                time.sleep(cfg["sampler"]["idle_baseline_s"])
                idle_bounds = (a, time.monotonic_ns())
        try:
            wr = engine.run(plan)
        except BaseException:
            if sampler is not None:
                try:  # the engine's error is the one to report, not a sampler's on the way out
                    sampler.stop()
                except Exception:
                    pass
            raise
        if sampler is not None:  # the trace must reach past the window's end (open loop can end early)
            time.sleep(max(0.0, wr.window_end_s + 2 * cfg["sampler"]["interval_s"] - time.monotonic()))
        trace = engine.modeled_power() if sampler is None else sampler.stop()
        t0_ns, t1_ns = int(wr.window_start_s * 1e9), int(wr.window_end_s * 1e9)
        if sampler is None:
            self.idle_w = cfg["gpu"]["idle_w"]  # the simulator's modeled idle draw
        elif idle_bounds is not None:
            self.idle_w = idle_power_from(trace, *idle_bounds)
        row = config_columns(cid, cfg, self.sweep)
        row.update(metrics.summarize(wr, plan.rate_rps, plan.ignore_eos))
        row.update(window_energy(trace, t0_ns, t1_ns, self.idle_w if trace.source != "none" else None,
                                 cfg["sampler"]["mismatch_tolerance"]))
        _per_unit(row)
        row.update({k: self.ctx[k] for k in ("host", "node_id", "ray_gpu_ids", "assigned_resources")})
        row.update(
            status="ok",
            error="",
            attempts=self.unit.get("attempt", 1),
            engine=self.engine_name,
            engine_reason=self.unit.get("engine_reason", ""),
            gpu_name=trace.gpu_name or None,
            gpu_uuid=trace.gpu_uuid or engine.gpu_uuid(),
            engine_versions=json.dumps(engine.versions(), sort_keys=True),
            engine_start_s=engine_start_s,
            engine_shared_cells=len(self.cells),
            engine_extra=json.dumps(wr.extra, sort_keys=True, default=str),
            cell_wall_s=time.monotonic() - t_wall,
            started_unix_s=started,
            finished_unix_s=time.time(),
        )
        tables = {
            "runs": runs_table([row]),
            "requests": columns_table("requests", _request_columns(cid, wr.records, wr.window_end_s)),
            "power": columns_table("power", _power_columns(cid, trace, wr.window_start_s, wr.window_end_s)),
        }
        return {"cell_id": cid, "status": "ok", "retryable": False, "tables": tables}


def run_unit_stream(unit: Mapping):
    """Body of a Ray task (a streaming generator): a 'started' marker, then one result per cell."""
    yield {"started_unix_s": time.time()}
    yield from UnitRunner(unit).results()
