"""The sampler protocol, power traces and the energy arithmetic of one measured window.

Energy over a window is the **counter** delta (NVML total energy, mJ), interpolated at the
window's ends; the instant-power samples are integrated (trapezoid) as a second estimate. A
counter that goes backwards inside the window (driver reload) invalidates the cell's energy —
never clamped. Idle baseline energy = idle W x window; net = gross - baseline, each its own
column. A window shorter than 10 counter update periods is ``short_window``.

A ``Sampler`` is cheap and picklable; ``start()`` acquires what it reads (NVML, a model) and
begins sampling, ``stop()`` ends it and returns the ``PowerTrace``. ``known_idle_power_w()`` is
the idle draw when the sampler knows it without measuring (a model's), else None: the worker
then measures an idle baseline first when ``measures_idle_baseline`` is true.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, ClassVar, Dict, List, Optional, Protocol, Tuple, TypeVar

from orchestrator.core.registry import registers

if TYPE_CHECKING:
    from orchestrator.config.groups import SamplerConfig

import numpy as np

from orchestrator.store.schema import (
    ENERGY_INVALID,
    ENERGY_J,
    ENERGY_MISMATCH,
    ENERGY_NOTE,
    ENERGY_SOURCE,
    GPU_UTIL_MEAN_PCT,
    IDLE_POWER_W,
    MEAN_POWER_W,
    MEMORY_USED_MAX_MIB,
    NET_ENERGY_J,
    SHORT_WINDOW,
)

SHORT_WINDOW_PERIODS = 10
DEFAULT_COUNTER_PERIOD_S = 0.1


@dataclass
class PowerTrace:
    """Samples on the cell's monotonic clock (ns). ``energy_mj`` is the cumulative counter
    (NaN where the source has none); ``source``: nvml | simulated | none."""

    source: str
    t_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    energy_mj: np.ndarray = field(default_factory=lambda: np.zeros(0))
    util_pct: np.ndarray = field(default_factory=lambda: np.zeros(0))
    memory_used_mib: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sm_clock_mhz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    temperature_c: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gpu_name: str = ""
    gpu_uuid: str = ""
    note: str = ""  # why there is no energy, or how power was read
    parts: Dict[str, "PowerTrace"] = field(default_factory=dict)  # GPU UUID -> its trace, when this one sums several

    def __len__(self) -> int:
        return int(self.t_ns.size)

    @property
    def measured(self) -> bool:
        """True when the samples were read from hardware (not a model's, not none)."""
        return self.source not in ("simulated", "none")


class MeasuredEngine(Protocol):
    """What a sampler asks of the engine whose cells it measures (``engines.base.Engine`` has it)."""

    @property
    def uses_gpu(self) -> bool: ...

    def gpu_uuid(self) -> Optional[str]: ...

    def energy_gpu_uuids(self) -> Tuple[str, ...]: ...

    def no_energy_reason(self) -> str: ...

    def modeled_sampler(self) -> Optional["Sampler"]: ...


S = TypeVar("S", bound="type[Sampler]")


def register_sampler(name: str) -> Callable[[S], S]:
    """Class decorator: the sampler plug-in ``name`` (``sampler=<name>``; found by ``energy.SAMPLERS``)."""
    return registers(name)


class Sampler(ABC):
    """Energy sampler lifecycle (see module doc); registered with ``@register_sampler``.

    The runtime calls ``for_engine`` (on the worker, once the engine has started), then
    ``known_idle_power_w`` / ``measures_idle_baseline`` (idle baseline or not), ``start`` and
    ``stop`` once per measured window."""

    name: ClassVar[str] = ""  # set by @register_sampler
    measures_idle_baseline: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def for_engine(cls, settings: "SamplerConfig", engine: MeasuredEngine) -> "Sampler":
        """The sampler that measures ``engine``'s cells under the ``sampler`` group's ``settings``."""

    @abstractmethod
    def start(self) -> None:
        """Begin sampling (raises a typed error, e.g. ``NvmlError``, when it cannot)."""

    @abstractmethod
    def stop(self) -> PowerTrace:
        """End sampling and return everything sampled since ``start()``."""

    def known_idle_power_w(self) -> Optional[float]:
        """Idle draw (W) known without measuring, else None."""
        return None


def counter_update_period_s(trace: PowerTrace) -> float:
    """Median time between changes of the energy counter (0.1 s if unknown)."""
    e = trace.energy_mj
    if e.size < 3 or np.all(np.isnan(e)):
        return DEFAULT_COUNTER_PERIOD_S
    changes = np.nonzero(np.diff(e) != 0)[0]
    if changes.size < 2:
        return DEFAULT_COUNTER_PERIOD_S
    return float(np.median(np.diff(trace.t_ns[changes + 1])) / 1e9)


def integrate_power_j(trace: PowerTrace, t0_ns: int, t1_ns: int) -> float:
    """Trapezoid integral of instant power over [t0, t1] (ends interpolated)."""
    t, p = trace.t_ns.astype(np.float64), trace.power_w
    inside = (t > t0_ns) & (t < t1_ns)
    ts = np.concatenate([[t0_ns], t[inside], [t1_ns]])
    ps = np.concatenate([[np.interp(t0_ns, t, p)], p[inside], [np.interp(t1_ns, t, p)]])
    return float(np.trapezoid(ps, ts) / 1e9)


def window_energy(
    trace: PowerTrace,
    t0_ns: int,
    t1_ns: int,
    idle_power_w: Optional[float],
    mismatch_tolerance: float = 0.05,
) -> Dict:
    """The energy columns of a ``runs`` row for the window [t0_ns, t1_ns]."""
    window_s = (t1_ns - t0_ns) / 1e9
    row = _empty_energy_row(trace, idle_power_w)
    if trace.source == "none" or len(trace) < 2:
        return row
    t = trace.t_ns.astype(np.float64)
    period = counter_update_period_s(trace)
    slack_ns = 2 * max(period, float(np.median(np.diff(t))) / 1e9) * 1e9
    if t[0] > t0_ns + slack_ns or t[-1] < t1_ns - slack_ns:
        row[ENERGY_INVALID] = True
        row[ENERGY_NOTE] = "the power trace does not cover the measured window"
        return row
    row["counter_update_period_s"] = period
    row[SHORT_WINDOW] = window_s < SHORT_WINDOW_PERIODS * period
    integrated = integrate_power_j(trace, t0_ns, t1_ns)
    row["energy_integrated_j"] = integrated
    row.update(_gross_energy(trace, t0_ns, t1_ns, integrated, mismatch_tolerance))
    if trace.parts:
        energy, off = per_gpu_energy(trace, t0_ns, t1_ns, mismatch_tolerance)
        row["energy_per_gpu_j"] = json.dumps(energy, sort_keys=True)
        row["energy_mismatch_gpus"] = json.dumps(off)
        row[ENERGY_MISMATCH] = bool(row.get(ENERGY_MISMATCH)) or bool(off)
    if row[ENERGY_J] is not None and idle_power_w is not None:
        row["baseline_energy_j"] = float(idle_power_w * window_s)
        row[NET_ENERGY_J] = row[ENERGY_J] - row["baseline_energy_j"]
    sel = (t >= t0_ns) & (t <= t1_ns)
    if sel.any():
        row[MEAN_POWER_W] = (row[ENERGY_J] or integrated) / window_s if window_s > 0 else None
        row["max_power_w"] = float(np.max(trace.power_w[sel]))
        row.update(_gpu_stats(trace, sel))
    return row


def _empty_energy_row(trace: PowerTrace, idle_power_w: Optional[float]) -> Dict:
    return {
        ENERGY_SOURCE: trace.source, ENERGY_NOTE: trace.note, ENERGY_J: None, "energy_integrated_j": None,
        IDLE_POWER_W: idle_power_w, "baseline_energy_j": None, NET_ENERGY_J: None, MEAN_POWER_W: None,
        "max_power_w": None, ENERGY_INVALID: False, ENERGY_MISMATCH: False, SHORT_WINDOW: False,
        "counter_update_period_s": None, GPU_UTIL_MEAN_PCT: None, MEMORY_USED_MAX_MIB: None,
        "sm_clock_mean_mhz": None, "temperature_max_c": None, "energy_per_gpu_j": None,
        "energy_mismatch_gpus": None,
    }


def per_gpu_energy(trace: PowerTrace, t0_ns: int, t1_ns: int,
                   tolerance: float) -> Tuple[Dict[str, Optional[float]], List[str]]:
    """Of a trace that sums several GPUs, each GPU on its own over [t0, t1]: ({GPU UUID: gross J},
    null for a GPU whose own energy is invalid; the GPUs whose own counter delta and integrated
    power differ by more than ``tolerance``, sorted — two errors of opposite signs never hide in
    the sum)."""
    energy: Dict[str, Optional[float]] = {}
    off = []
    for uuid, part in trace.parts.items():
        if len(part) < 2:
            energy[uuid] = None
            continue
        gross = _gross_energy(part, t0_ns, t1_ns, integrate_power_j(part, t0_ns, t1_ns), tolerance)
        energy[uuid] = gross.get(ENERGY_J)
        if gross.get(ENERGY_MISMATCH):
            off.append(uuid)
    return energy, sorted(off)


def idle_power_per_gpu(trace: PowerTrace, t0_ns: int, t1_ns: int) -> Optional[Dict[str, Optional[float]]]:
    """{GPU UUID: idle W over [t0, t1]} of a trace that sums several GPUs (``idle_power_from`` of
    each), or None for a single GPU's trace."""
    if not trace.parts:
        return None
    return {uuid: idle_power_from(part, t0_ns, t1_ns) for uuid, part in sorted(trace.parts.items())}


def _gross_energy(trace: PowerTrace, t0_ns: int, t1_ns: int, integrated_j: float, tolerance: float) -> Dict:
    """Gross energy (J) from the counter delta, cross-checked against the integrated power (a
    measured trace only: a model's samples of its own exact counter check nothing); the
    integrated power itself where the card has no counter; invalid if the counter went back."""
    e = trace.energy_mj
    if np.all(np.isnan(e)):
        return {ENERGY_J: integrated_j}
    t = trace.t_ns.astype(np.float64)
    in_win = e[(t >= t0_ns) & (t <= t1_ns)]
    e0, e1 = np.interp(t0_ns, t, e), np.interp(t1_ns, t, e)
    if in_win.size and (np.any(np.diff(in_win) < 0) or e1 < e0):
        return {ENERGY_INVALID: True, ENERGY_NOTE: "energy counter went backwards in the window (driver reload?)"}
    gross = float((e1 - e0) / 1e3)
    mismatch = trace.measured and gross > 0 and abs(integrated_j - gross) / gross > tolerance
    return {ENERGY_J: gross, ENERGY_MISMATCH: bool(mismatch)}


def _gpu_stats(trace: PowerTrace, sel: np.ndarray) -> Dict:
    """Mean utilisation and SM clock, max memory and temperature over the window's samples."""
    out = {}
    for col, arr, fn in (
        (GPU_UTIL_MEAN_PCT, trace.util_pct, np.mean),
        (MEMORY_USED_MAX_MIB, trace.memory_used_mib, np.max),
        ("sm_clock_mean_mhz", trace.sm_clock_mhz, np.mean),
        ("temperature_max_c", trace.temperature_c, np.max),
    ):
        vals = arr[sel] if arr.size == sel.size else np.zeros(0)
        vals = vals[~np.isnan(vals)] if vals.size else vals
        out[col] = float(fn(vals)) if vals.size else None
    return out


def idle_power_from(trace: PowerTrace, t0_ns: int, t1_ns: int) -> Optional[float]:
    """Mean power over an idle interval: counter delta / time, else integrated power / time."""
    if len(trace) < 2 or t1_ns <= t0_ns:
        return None
    t = trace.t_ns.astype(np.float64)
    e = trace.energy_mj
    if not np.all(np.isnan(e)):
        delta = np.interp(t1_ns, t, e) - np.interp(t0_ns, t, e)
        if delta > 0:
            return float(delta / 1e3 / ((t1_ns - t0_ns) / 1e9))
    return integrate_power_j(trace, t0_ns, t1_ns) / ((t1_ns - t0_ns) / 1e9)
