"""Ray: connect or start a local cluster, resolve ``engine=auto``, group cells into tasks, submit
each with its resources, follow progress, retry, and hand every result to the store.

Placement: a GPU cell asks for ``num_gpus=1`` and ``accelerator_type=<gpu>`` (Ray's
``accelerator_type:<T>`` resource), so an H100 cell never lands on a T4 node. Simulated cells ask
for one CPU, or, with ``dispatch.place_as_gpu``, exactly what a GPU cell would.

Retries: a task whose worker or node dies is retried by Ray (``max_retries``), then recorded
``worker_lost``; a cell that raised an unexpected error is re-submitted by the driver up to
``max_retries`` more times, then kept as ``engine_error``. A task running longer than
``cell_timeout_s`` per cell is cancelled and its cells recorded ``timeout``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from orchestrator.engines import engine_key
from orchestrator.grid import Cell, cell_id_of
from orchestrator.progress import SweepProgress
from orchestrator.rows import status_tables

SHARED_ENGINES = ("vllm_offline", "hf")  # engines whose cells may differ only in batch size


def connect(dispatch: Mapping) -> str:
    """Attach to ``dispatch.address`` / ``RAY_ADDRESS``, else start a local cluster. -> how."""
    import ray

    if ray.is_initialized():
        return "already connected"
    address = dispatch.get("address") or os.environ.get("RAY_ADDRESS")
    kwargs = dict(logging_level="WARNING", log_to_driver=True)
    if dispatch.get("runtime_env"):
        kwargs["runtime_env"] = dict(dispatch["runtime_env"])
    if address:
        ray.init(address=address, **kwargs)
        return f"attached to the Ray cluster at {address}"
    # "local": a new cluster even if a stale /tmp/ray/ray_current_cluster names a dead one.
    ray.init(address="local", num_cpus=dispatch.get("num_cpus"), include_dashboard=False, **kwargs)
    return "started a local Ray cluster"


def _probe_vllm() -> Tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return False, "vllm is not installed there"
    try:
        from importlib.metadata import version

        return True, f"vllm {version('vllm')}"
    except Exception as exc:  # pragma: no cover - broken install
        return False, f"vllm is broken there: {exc}"


def resolve_auto(cells: List[Cell], probe_timeout_s: float = 120.0) -> Dict[str, Tuple[str, str]]:
    """accelerator_type -> (engine, reason) for the GPU types of ``engine=auto`` cells.

    vllm when the cluster offers that GPU type and vllm imports on a node that has it (checked
    there, so a head without GPUs does not force simulation), else simulated."""
    import ray

    types = sorted({c.gpu["accelerator_type"] for c in cells if c.engine == "auto" and c.status is None})
    if not types:
        return {}
    resources = ray.cluster_resources()
    probe = ray.remote(num_cpus=0)(_probe_vllm)
    out = {}
    for t in types:
        key = f"accelerator_type:{t}"
        if resources.get(key, 0) <= 0 or resources.get("GPU", 0) <= 0:
            out[t] = ("simulated", f"the Ray cluster offers no {t} GPU")
            continue
        try:
            ok, why = ray.get(probe.options(resources={key: 0.001}).remote(), timeout=probe_timeout_s)
        except Exception as exc:
            ok, why = False, f"probe failed: {type(exc).__name__}"
        out[t] = ("vllm", f"a {t} node has {why}") if ok else ("simulated", f"a {t} node has no usable vllm ({why})")
    for t, (engine, why) in out.items():
        print(f"engine=auto: {engine} for {t} cells ({why})", flush=True)
    return out


@dataclass
class Unit:
    """One Ray task: cells sharing an engine start."""

    key: str
    engine: str
    engine_reason: str
    cells: List[Cell]
    attempt: int = 1
    on_gpu: bool = True

    def payload(self, sweep: str) -> Dict:
        return {
            "key": self.key, "engine": self.engine, "engine_reason": self.engine_reason, "sweep": sweep,
            "attempt": self.attempt, "cells": [{"cell_id": c.cell_id, "config": c.config} for c in self.cells],
        }


def make_units(cells: List[Cell], auto: Mapping[str, Tuple[str, str]], gpu_types: Mapping[str, bool],
               share_engines: bool = True) -> List[Unit]:
    """Group runnable cells into tasks. ``gpu_types[t]``: the cluster has GPUs of type t;
    ``share_engines=False``: one task per cell, always."""
    groups: Dict[str, Unit] = {}
    for c in cells:
        engine, reason = c.engine, ""
        if engine == "auto":
            engine, reason = auto[c.gpu["accelerator_type"]]
        key = engine_key(engine, c.config["workload"])
        on_gpu = engine == "vllm" or (engine == "hf" and gpu_types.get(c.gpu["accelerator_type"], False))
        if engine == "hf" and not on_gpu:
            reason = f"the Ray cluster offers no {c.gpu['accelerator_type']} GPU: hf runs on the CPU"
        if share_engines and key in SHARED_ENGINES:
            share = cell_id_of({**c.config, "batch_size": 0, "repeat": 0, "engine_resolved": engine})
        else:
            share = c.cell_id
        unit = groups.get(share)
        if unit is None:
            groups[share] = Unit(key=share, engine=engine, engine_reason=reason, cells=[c], on_gpu=on_gpu)
        else:
            unit.cells.append(c)
    return list(groups.values())


@dataclass
class Dispatcher:
    """Submits units, collects results, writes them through ``on_result``."""

    dispatch: Mapping
    sweep: str
    on_result: object  # callable(cell_id, status, tables)
    place_as_gpu: bool = False
    _state: Dict = field(default_factory=dict)  # generator -> cells reported / to retry

    def _options(self, unit: Unit) -> Dict:
        gpu = unit.cells[0].gpu
        opts = {"num_cpus": 1, "max_retries": int(self.dispatch.get("max_retries", 1)),
                "retry_exceptions": False}
        if unit.on_gpu or self.place_as_gpu:
            opts.update(num_gpus=1, accelerator_type=gpu["accelerator_type"])
        if unit.on_gpu:
            # NVML numbers GPUs in PCI-bus order; make CUDA (and Ray's ids) agree (gpuinfo.py).
            opts["runtime_env"] = {"env_vars": {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}}
        return opts

    def run(self, units: List[Unit], progress: SweepProgress) -> None:
        """Submit every unit, then collect until none is pending.

        Each task is a streaming generator: it first yields when it starts (so the driver knows
        what is running and since when, for the progress bar and timeouts), then its results."""
        import ray
        from orchestrator.cell import run_unit_stream

        remote = ray.remote(run_unit_stream)
        # a fresh process per GPU task: everything it held on the GPU is freed when it exits
        remote_gpu = ray.remote(max_calls=1)(run_unit_stream)
        max_attempts = 1 + int(self.dispatch.get("max_retries", 1))
        timeout_s = float(self.dispatch.get("cell_timeout_s", 3600))
        pending: Dict = {}  # generator -> unit
        started: Dict = {}  # generator -> unix time the task began
        cancelled: set = set()

        def submit(unit: Unit) -> None:
            fn = remote_gpu if unit.on_gpu else remote
            pending[fn.options(**self._options(unit)).remote(unit.payload(self.sweep))] = unit

        for u in units:
            submit(u)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=min(len(pending), 64), timeout=0.25)
            for gen in ready:
                retry = self._advance(gen, pending, started, cancelled, progress, max_attempts)
                if retry is not None:
                    submit(retry)
            now = time.time()
            for gen, t in list(started.items()):
                if gen in pending and gen not in cancelled and now - t > timeout_s * len(pending[gen].cells):
                    cancelled.add(gen)
                    ray.cancel(gen, force=True)
            progress.update(running=sum(len(pending[g].cells) for g in started if g in pending))

    def _advance(self, gen, pending, started, cancelled, progress, max_attempts) -> Optional[Unit]:
        """Consume the next item of a ready generator; -> a unit to retry, once the task ends."""
        import ray
        from ray.exceptions import RayTaskError, TaskCancelledError

        unit = pending[gen]
        state = self._state.setdefault(gen, {"done": set(), "retry": []})
        try:
            item = ray.get(next(gen))
        except StopIteration:  # the task finished: every cell has reported
            self._finish(gen, pending, started)
            return self._retry_unit(unit, state["retry"])
        except (TaskCancelledError, RayTaskError) as exc:
            self._finish(gen, pending, started)
            rest = [c for c in unit.cells if c.cell_id not in state["done"]]
            if gen in cancelled or isinstance(exc, TaskCancelledError):
                self._fail(unit, rest, "timeout", f"cancelled after {self.dispatch.get('cell_timeout_s')} s per cell", progress)
                return None
            return self._retry_or_fail(unit, rest + state["retry"], "engine_error", str(exc)[-4000:], progress, max_attempts)
        except Exception as exc:  # worker or node died after Ray's own retries
            self._finish(gen, pending, started)
            rest = [c for c in unit.cells if c.cell_id not in state["done"]]
            self._fail(unit, rest, "worker_lost", f"{type(exc).__name__}: {str(exc)[-2000:]}", progress)
            return self._retry_unit(unit, state["retry"])
        if "started_unix_s" in item:
            started[gen] = time.time()  # the driver's clock: no skew between nodes in timeouts
            return None
        state["done"].add(item["cell_id"])
        if item["retryable"] and unit.attempt < max_attempts:
            state["retry"].append(next(c for c in unit.cells if c.cell_id == item["cell_id"]))
        else:
            self.on_result(item["cell_id"], item["status"], item["tables"])
            progress.update(status=item["status"])
        return None

    def _finish(self, gen, pending, started) -> None:
        pending.pop(gen)
        started.pop(gen, None)
        self._state.pop(gen, None)

    @staticmethod
    def _retry_unit(unit: Unit, cells: List[Cell]) -> Optional[Unit]:
        if not cells:
            return None
        return Unit(key=f"{unit.key}#{unit.attempt + 1}", engine=unit.engine, engine_reason=unit.engine_reason,
                    cells=list(cells), attempt=unit.attempt + 1, on_gpu=unit.on_gpu)

    def _retry_or_fail(self, unit, cells, status, error, progress, max_attempts) -> Optional[Unit]:
        if unit.attempt < max_attempts:
            return self._retry_unit(unit, cells)
        self._fail(unit, cells, status, error, progress)
        return None

    def _fail(self, unit: Unit, cells: List[Cell], status: str, error: str, progress) -> None:
        for c in cells:
            tables = status_tables(c.cell_id, c.config, self.sweep, status, error, attempts=unit.attempt,
                                   engine=unit.engine, engine_reason=unit.engine_reason)
            self.on_result(c.cell_id, status, tables)
            progress.update(status=status)
