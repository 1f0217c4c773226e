"""Energy of several GPUs at once, summed: the GPUs of a server the orchestrator did not start
(``engine=endpoint`` with ``engine.endpoint.gpu_uuids``), read on the Ray node that holds them.

``GpuSetSampler(uuids, interval_s)`` runs one ``NvmlSampler`` per GPU (each by UUID, each its own
thread) and ``stop()`` returns their sum as one ``PowerTrace(source='nvml')`` on the first GPU's
sample times: the energy counters (mJ) and instant powers (W) of the others are interpolated
there and added; memory used is summed, utilisation and SM clock averaged, temperature the
hottest. The per-GPU traces stay in ``PowerTrace.parts`` (UUID -> trace), so the window's energy
of each GPU is its own column (``energy_per_gpu_j``, ``energy.base.window_energy``). A counter
that goes back on any GPU shows in the sum as a drop: the cell's energy is invalid, never clamped.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from orchestrator.energy.base import PowerTrace, Sampler
from orchestrator.energy.nvml import NvmlSampler


class GpuSetSampler(Sampler):
    """Samples every GPU in ``uuids`` (NVML UUIDs) at ``1 / interval_s`` Hz; cheap and picklable."""

    measures_idle_baseline = True

    def __init__(self, uuids: Sequence[str], interval_s: float = 0.1):
        if not uuids:
            raise ValueError("GpuSetSampler needs at least one GPU UUID")
        self.uuids = tuple(uuids)
        self.samplers: List[NvmlSampler] = [NvmlSampler(u, interval_s) for u in self.uuids]

    def start(self) -> None:
        """Start every GPU's sampler; if one fails, stop those already started and raise."""
        started: List[NvmlSampler] = []
        try:
            for s in self.samplers:
                s.start()
                started.append(s)
        except BaseException:
            for s in started:
                try:
                    s.stop()
                except Exception:
                    pass
            raise

    def stop(self) -> PowerTrace:
        """Stop them all (every one, even after an error) and return the summed trace."""
        traces, error = [], None
        for s in self.samplers:
            try:
                traces.append(s.stop())
            except Exception as exc:  # the first error is the one to raise, once all are stopped
                error = error or exc
        if error is not None:
            raise error
        return summed(traces)


def summed(traces: Sequence[PowerTrace]) -> PowerTrace:
    """The sum of per-GPU traces on the first one's sample times (see module doc)."""
    base = traces[0]
    t = base.t_ns.astype(np.float64)

    def at(tr: PowerTrace, col: str) -> np.ndarray:
        values = getattr(tr, col)
        if values.size == 0 or np.all(np.isnan(values)):
            return np.full(t.size, np.nan)
        return np.interp(t, tr.t_ns.astype(np.float64), values)

    cols: Dict[str, np.ndarray] = {}
    for col, combine in (("energy_mj", np.sum), ("power_w", np.sum), ("memory_used_mib", np.sum),
                         ("util_pct", np.mean), ("sm_clock_mhz", np.mean), ("temperature_c", np.max)):
        cols[col] = combine(np.vstack([at(tr, col) for tr in traces]), axis=0)
    names = sorted({tr.gpu_name for tr in traces if tr.gpu_name})
    return PowerTrace(
        source=base.source, t_ns=base.t_ns.copy(), gpu_name=", ".join(names),
        gpu_uuid=",".join(tr.gpu_uuid for tr in traces),
        note=f"sum of {len(traces)} GPUs; " + " | ".join(f"{tr.gpu_uuid}: {tr.note}" for tr in traces),
        parts={tr.gpu_uuid: tr for tr in traces}, **cols,
    )
