"""Power traces and the energy arithmetic of one measured window (DESIGN §5).

Energy over a window is the **counter** delta (NVML total energy, mJ), interpolated at the
window's ends; the instant-power samples are integrated (trapezoid) as a second estimate. A
counter that goes backwards inside the window (driver reload) invalidates the cell's energy —
never clamped. Idle baseline energy = idle W x window; net = gross - baseline, each its own
column. A window shorter than 10 counter update periods is ``short_window``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

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

    def __len__(self) -> int:
        return int(self.t_ns.size)


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
    row: Dict = {
        "energy_source": trace.source,
        "energy_note": trace.note,
        "energy_j": None,
        "energy_integrated_j": None,
        "idle_power_w": idle_power_w,
        "baseline_energy_j": None,
        "net_energy_j": None,
        "mean_power_w": None,
        "max_power_w": None,
        "energy_invalid": False,
        "energy_mismatch": False,
        "short_window": False,
        "counter_update_period_s": None,
        "gpu_util_mean_pct": None,
        "memory_used_max_mib": None,
        "sm_clock_mean_mhz": None,
        "temperature_max_c": None,
    }
    if trace.source == "none" or len(trace) < 2:
        return row
    t = trace.t_ns.astype(np.float64)
    sel = (t >= t0_ns) & (t <= t1_ns)
    period = counter_update_period_s(trace)
    slack_ns = 2 * max(period, float(np.median(np.diff(t))) / 1e9) * 1e9
    if t[0] > t0_ns + slack_ns or t[-1] < t1_ns - slack_ns:
        row["energy_invalid"] = True
        row["energy_note"] = "the power trace does not cover the measured window"
        return row
    row["counter_update_period_s"] = period
    row["short_window"] = window_s < SHORT_WINDOW_PERIODS * period
    integrated = integrate_power_j(trace, t0_ns, t1_ns)
    row["energy_integrated_j"] = integrated
    e = trace.energy_mj
    if not np.all(np.isnan(e)):
        in_win = e[sel]
        if in_win.size and (np.any(np.diff(in_win) < 0) or np.interp(t1_ns, t, e) < np.interp(t0_ns, t, e)):
            row["energy_invalid"] = True
            row["energy_note"] = "energy counter went backwards in the window (driver reload?)"
        else:
            gross = (np.interp(t1_ns, t, e) - np.interp(t0_ns, t, e)) / 1e3
            row["energy_j"] = float(gross)
            if gross > 0:
                row["energy_mismatch"] = abs(integrated - gross) / gross > mismatch_tolerance
    else:
        row["energy_j"] = integrated
    if row["energy_j"] is not None and idle_power_w is not None:
        row["baseline_energy_j"] = float(idle_power_w * window_s)
        row["net_energy_j"] = row["energy_j"] - row["baseline_energy_j"]
    if sel.any():
        row["mean_power_w"] = (row["energy_j"] or integrated) / window_s if window_s > 0 else None
        row["max_power_w"] = float(np.max(trace.power_w[sel]))
        for col, arr, fn in (
            ("gpu_util_mean_pct", trace.util_pct, np.mean),
            ("memory_used_max_mib", trace.memory_used_mib, np.max),
            ("sm_clock_mean_mhz", trace.sm_clock_mhz, np.mean),
            ("temperature_max_c", trace.temperature_c, np.max),
        ):
            vals = arr[sel] if arr.size == t.size else np.zeros(0)
            vals = vals[~np.isnan(vals)] if vals.size else vals
            row[col] = float(fn(vals)) if vals.size else None
    return row


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
