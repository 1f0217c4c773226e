"""The NVML sampler: energy counter + instant power in a thread, on the monotonic clock.

``NvmlSampler(gpu_uuid, interval_s)`` is cheap and picklable; ``start()`` initialises NVML, finds
the GPU **by UUID** (NVML ignores ``CUDA_VISIBLE_DEVICES``), probes what the card answers, takes a
first sample and starts a daemon thread that samples every ``interval_s`` on average (>= 10 Hz;
dithered steps, see ``_loop``); ``stop()``
joins it, takes a last sample and returns a ``PowerTrace(source='nvml')``.

Each sample holds:

- ``t_ns``: ``time.monotonic_ns()`` at the midpoint of the energy-counter read (same clock as
  the engines' ``time.monotonic()`` windows);
- ``energy_mj``: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded), raw: never
  clamped or rebased, so a driver reload shows as a negative delta (``window_energy`` then
  invalidates the cell). NaN in every sample when the card has no counter (pre-Volta);
- ``power_w``: instant power from ``nvmlDeviceGetFieldValues`` field 186
  (``NVML_FI_DEV_POWER_INSTANT``, mW), else ``nvmlDeviceGetPowerUsage`` (mW; a 1 s average on
  Hopper and Ada, instantaneous on A100/T4). ``PowerTrace.note`` says which was used;
- ``util_pct`` (GPU utilisation), ``memory_used_mib``, ``sm_clock_mhz``, ``temperature_c``: NaN
  when the card does not support the query (said in the note).

Errors: every ``pynvml.NVMLError`` becomes a typed ``errors.NvmlError`` subclass naming the call
(``NvmlUnavailable``, ``NvmlNotFound``, ``NvmlNotSupported``, ``NvmlGpuLost``, ...). An error in
``start()`` raises there; an error in the thread stops sampling and ``stop()`` raises it (a
truncated trace would give a wrong energy). ``pynvml`` is imported inside functions only.


**Several GPUs at once** (``GpuSetSampler``):Energy of several GPUs at once, summed: the GPUs of a server the orchestrator did not start
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

import random
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from orchestrator.energy.base import MeasuredEngine, PowerTrace, Sampler, register_sampler
from orchestrator.energy.gpuinfo import assigned_gpu, device_name, handle_by_uuid, nvml, nvml_error
from orchestrator.energy.null import NullSampler
from orchestrator.errors import NvmlError, NvmlNotSupported

if TYPE_CHECKING:
    from orchestrator.config.groups import SamplerConfig

POWER_FIELD_INSTANT = 186  # NVML_FI_DEV_POWER_INSTANT (mW)
MAX_INTERVAL_S = 0.1  # >= 10 Hz (the energy counter itself updates about every 100 ms)
COLUMNS = ("t_ns", "energy_mj", "power_w", "util_pct", "memory_used_mib", "sm_clock_mhz", "temperature_c")
OPTIONAL = ("util_pct", "memory_used_mib", "sm_clock_mhz", "temperature_c")


@register_sampler("nvml")
class NvmlSampler(Sampler):
    """Samples one GPU (by NVML UUID) at ``1 / interval_s`` Hz between ``start()`` and ``stop()``.

    ``gpu_uuid``: ``GPU-...`` of the card the engine runs on; None means CUDA device 0 of this
    process (``gpuinfo.assigned_gpu``). ``interval_s``: seconds between samples, in (0, 0.1].
    """

    def __init__(self, gpu_uuid: Optional[str], interval_s: float = 0.1):
        if not 0 < interval_s <= MAX_INTERVAL_S:
            raise ValueError(f"interval_s={interval_s}: must be in (0, {MAX_INTERVAL_S}] s (>= 10 Hz)")
        self.gpu_uuid = gpu_uuid
        self.interval_s = float(interval_s)
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._rows: Dict[str, List[float]] = {c: [] for c in COLUMNS}
        self._notes: List[str] = []
        self._power_fallbacks = 0

    measures_idle_baseline = True

    @classmethod
    def for_engine(cls, settings: "SamplerConfig", engine: MeasuredEngine) -> Sampler:
        """The GPU the engine runs on, at ``settings.interval_s``; the GPUs it names
        (``energy_gpu_uuids``), summed (``GpuSetSampler``); the null sampler (with the
        reason) for an engine that runs on no GPU."""
        uuids = engine.energy_gpu_uuids()
        if uuids:
            return GpuSetSampler.for_engine(settings, engine)
        if not engine.uses_gpu:
            return NullSampler(engine.no_energy_reason())
        return cls(gpu_uuid=engine.gpu_uuid(), interval_s=settings.interval_s)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Find the GPU, probe the metrics, take a first sample, start the thread."""
        if self._thread is not None:
            raise RuntimeError("NvmlSampler.start() called twice")
        self._nv = nvml()
        if self.gpu_uuid is None:
            self.gpu_uuid = assigned_gpu().uuid
        self._handle = handle_by_uuid(self._nv, self.gpu_uuid)
        self._gpu_name = device_name(self._nv, self._handle)
        self._probe()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name=f"nvml-sampler-{self.gpu_uuid}", daemon=True)
        self._thread.start()

    def stop(self) -> PowerTrace:
        """Stop the thread, take a last sample, return the trace (raises the thread's error)."""
        if self._thread is None:
            raise RuntimeError("NvmlSampler.stop() before start()")
        self._stop.set()
        self._thread.join(timeout=10 * self.interval_s + 5.0)
        try:
            if self._error is not None:
                raise self._error
            self._sample()
            return self._trace()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except self._nv.NVMLError:  # nothing measured depends on it
            pass

    # ------------------------------------------------------------------ probing
    def _call(self, name: str, *args):
        """``pynvml.<name>(handle, *args)`` with NVML errors typed."""
        try:
            return getattr(self._nv, name)(self._handle, *args)
        except self._nv.NVMLError as exc:
            raise nvml_error(self._nv, name, exc) from exc

    def _supported(self, name: str, *args) -> bool:
        """True if the query answers; False (with a note) if the card does not support it."""
        try:
            self._call(name, *args)
            return True
        except NvmlNotSupported as exc:
            self._notes.append(f"{name} not supported ({exc}): NaN")
            return False

    def _probe(self) -> None:
        nv = self._nv
        self._has_energy = self._supported("nvmlDeviceGetTotalEnergyConsumption")
        self._power_source = self._probe_power()
        if not self._has_energy and self._power_source is None:
            raise NvmlNotSupported(
                f"{self._gpu_name} ({self.gpu_uuid}) has neither the energy counter nor a power reading"
            )
        self._optional: Dict[str, Callable[[], float]] = {}
        probes: Dict[str, Tuple[str, Tuple[int, ...], Callable[[Any], float]]] = {
            "util_pct": ("nvmlDeviceGetUtilizationRates", (), lambda r: float(r.gpu)),
            "memory_used_mib": ("nvmlDeviceGetMemoryInfo", (), lambda r: r.used / 2**20),
            "sm_clock_mhz": ("nvmlDeviceGetClockInfo", (nv.NVML_CLOCK_SM,), float),
            "temperature_c": ("nvmlDeviceGetTemperature", (nv.NVML_TEMPERATURE_GPU,), float),
        }
        for col, (name, args, conv) in probes.items():
            if self._supported(name, *args):
                self._optional[col] = self._reader(name, args, conv)

    def _reader(self, name: str, args: Tuple[int, ...], conv: Callable[[Any], float]) -> Callable[[], float]:
        """One optional column's reading: ``conv(pynvml.<name>(handle, *args))``."""
        return lambda: conv(self._call(name, *args))

    def _probe_power(self) -> Optional[str]:
        """'field186' | 'power_usage' | None (no power reading at all)."""
        try:
            self._instant_power_mw()
            return "field186"
        except NvmlNotSupported as exc:
            why = str(exc)
        if self._supported("nvmlDeviceGetPowerUsage"):
            self._notes.append(
                f"instant power field {POWER_FIELD_INSTANT} unavailable ({why}); power from "
                "nvmlDeviceGetPowerUsage (a 1 s average on Ampere-non-GA100 and newer)"
            )
            return "power_usage"
        return None

    # ------------------------------------------------------------------ readings
    def _instant_power_mw(self) -> float:
        """Field 186 in mW; ``NvmlNotSupported`` when the call or its entry is not supported."""
        nv = self._nv
        values = self._call("nvmlDeviceGetFieldValues", [POWER_FIELD_INSTANT])
        entry = values[0]
        if entry.nvmlReturn != nv.NVML_SUCCESS:
            call = f"nvmlDeviceGetFieldValues field {POWER_FIELD_INSTANT}"
            raise nvml_error(nv, call, nv.NVMLError(entry.nvmlReturn))
        return _field_value(nv, entry)

    def _power_w(self) -> float:
        if self._power_source == "field186":
            try:
                return self._instant_power_mw() / 1e3
            except NvmlNotSupported:
                # One entry failing mid-run: this sample from the averaged reading, counted.
                self._power_fallbacks += 1
                return self._call("nvmlDeviceGetPowerUsage") / 1e3
        if self._power_source == "power_usage":
            return self._call("nvmlDeviceGetPowerUsage") / 1e3
        return float("nan")

    def _sample(self) -> None:
        """Append one row (raises typed NvmlError)."""
        t0 = time.monotonic_ns()
        energy = float(self._call("nvmlDeviceGetTotalEnergyConsumption")) if self._has_energy else float("nan")
        t1 = time.monotonic_ns()
        row = {"t_ns": (t0 + t1) // 2, "energy_mj": energy, "power_w": self._power_w()}
        for col in OPTIONAL:
            read = self._optional.get(col)
            row[col] = read() if read is not None else float("nan")
        for col in COLUMNS:
            self._rows[col].append(row[col])

    def _loop(self) -> None:
        """Sample on an absolute schedule with dithered steps (uniform in [0.5, 1.5] x
        ``interval_s``, never over ``MAX_INTERVAL_S``), so the samples never lock onto a periodic
        load (static batches every k x interval) and bias the integrated power; a late sample
        moves the schedule, never bunches up."""
        rng = random.Random(0)
        step_ns = int(self.interval_s * 1e9)
        next_ns = time.monotonic_ns() + step_ns
        while not self._stop.wait(max(0.0, (next_ns - time.monotonic_ns()) / 1e9)):
            try:
                self._sample()
            except NvmlError as exc:
                self._error = exc
                return
            except Exception as exc:  # a bug must not pass silently either
                self._error = NvmlError(f"NVML sampler thread failed: {type(exc).__name__}: {exc}")
                return
            next_ns += min(int(step_ns * rng.uniform(0.5, 1.5)), int(MAX_INTERVAL_S * 1e9))
            now = time.monotonic_ns()
            if now > next_ns:
                next_ns = now + step_ns

    # ------------------------------------------------------------------ result
    def _trace(self) -> PowerTrace:
        t = np.asarray(self._rows["t_ns"], dtype=np.int64)

        def col(name: str) -> np.ndarray:
            return np.asarray(self._rows[name], dtype=np.float64)

        return PowerTrace(
            source="nvml",
            t_ns=t,
            energy_mj=col("energy_mj"),
            power_w=col("power_w"),
            util_pct=col("util_pct"),
            memory_used_mib=col("memory_used_mib"),
            sm_clock_mhz=col("sm_clock_mhz"),
            temperature_c=col("temperature_c"),
            gpu_name=self._gpu_name,
            gpu_uuid=self.gpu_uuid or "",
            note=self._note(t),
        )

    def _note(self, t: np.ndarray) -> str:
        rate = (t.size - 1) / ((t[-1] - t[0]) / 1e9) if t.size > 1 and t[-1] > t[0] else float("nan")
        power = {
            "field186": f"power: NVML field {POWER_FIELD_INSTANT} (instant)",
            "power_usage": "power: nvmlDeviceGetPowerUsage",
            None: "power: none",
        }[self._power_source]
        parts = [power, "energy: total-energy counter" if self._has_energy else "energy: integrated power (no counter)",
                 f"{t.size} samples at {rate:.1f} Hz"]
        if self._power_fallbacks:
            parts.append(f"{self._power_fallbacks} samples fell back to nvmlDeviceGetPowerUsage")
        return "; ".join(parts + self._notes)


def _field_value(nv, entry) -> float:
    """The numeric value of an ``nvmlFieldValue_t`` by its ``valueType``."""
    kinds = {
        getattr(nv, "NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
        getattr(nv, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
        getattr(nv, "NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal",
    }
    return float(getattr(entry.value, kinds.get(entry.valueType, "uiVal")))


class GpuSetSampler(Sampler):
    """Samples every GPU in ``uuids`` (NVML UUIDs) at ``1 / interval_s`` Hz; cheap and picklable."""

    measures_idle_baseline = True

    def __init__(self, uuids: Sequence[str], interval_s: float = 0.1):
        if not uuids:
            raise ValueError("GpuSetSampler needs at least one GPU UUID")
        self.uuids = tuple(uuids)
        self.samplers: List[NvmlSampler] = [NvmlSampler(u, interval_s) for u in self.uuids]

    @classmethod
    def for_engine(cls, settings: "SamplerConfig", engine: MeasuredEngine) -> "GpuSetSampler":
        """The GPUs the engine's cells are charged with (``energy_gpu_uuids``), summed."""
        return cls(engine.energy_gpu_uuids(), interval_s=settings.interval_s)

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
