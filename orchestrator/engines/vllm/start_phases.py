"""Where a vLLM engine start's seconds went, read from its log once it is up (``vllm_offline``:
``vllm.LLM(...)``; ``vllm_server``: ``vllm serve``).

The phases, in order, cover the start from our launch (the log file is opened, then
``vllm.LLM`` is built or ``vllm serve`` spawned) to ready (``LLM`` returned; ``/health`` 200):

=================  ==========  =================================================================
field              from        what it holds
=================  ==========  =================================================================
``launch_s``       stamps      launch -> the engine core's ``Initializing a V1 LLM engine``:
                               Python and vLLM imports, config resolution, (server: the API
                               server's start) and the engine-core process spawned; split into
                               ``frontend_s`` (launch -> the engine-core process created) and
                               ``core_boot_s`` (created -> that line: a spawned process's imports;
                               a forked one's is under the stamps' 1 s: 0 when it reads below)
``model_setup_s``  stamps      that line -> the start of vLLM's ``init engine`` timer: device and
                               distributed init, the model built and its weights loaded
``init_engine_s``  vLLM        ``init engine (profile, create kv cache, warmup model) took X s``
``ready_s``        stamps      the ``init engine`` line -> ready: scheduler, frontend (server: the
                               API server's routes), our health poll
=================  ==========  =================================================================

``launch_s + model_setup_s + init_engine_s + ready_s`` is ``total_s`` (launch -> ready, our own
clock), up to the stamps' rounding. Inside them, vLLM's own figures:

- ``weights_s`` (in ``model_setup_s``): ``Model loading took X GiB and Y seconds``;
- in ``init_engine_s``: ``compile_s`` (``torch.compile took X s in total``, Dynamo and Inductor,
  or the compiled graphs loaded from vLLM's compile cache: ``compile_cached`` True when every
  graph came from the cache — ``Directly load the compiled graph(s) ... from the cache`` /
  ``Directly load AOT compilation`` — False when one was compiled — ``Compiling a graph for
  ...`` — None when nothing was compiled, e.g. ``enforce_eager``); ``profiling_s`` (``Initial
  profiling/warmup run took X s``: the dummy forward pass whose peak memory sizes the KV cache);
  ``graph_capture_s`` (``Graph capturing finished in N secs``: whole seconds, vLLM's rounding);
  ``warmup_s`` (stamps: the graph-capture line -> the ``init engine`` line: the sampler and
  kernel warm-up after capture, where kernels are JIT-compiled on a machine's first start); and
  ``init_other_s``, the rest of ``init_engine_s`` (KV cache sizing and allocation, kernel
  autotuning before capture): ``init_engine_s`` minus the four above, at least 0.

"vLLM" figures are the ``took X s`` numbers vLLM logs (10 ms resolution, graph capture 1 s).
"stamps" figures are differences of log-header times, which have 1 s resolution (``%m-%d
%H:%M:%S``, the engine's local time, no year: the year is the one that puts the time nearest the
launch): each stamp is read as the middle of its second, so such a phase is good to about a
second. The launch and ready ends are our own ``time.time()``; the engine-core process's creation
is the kernel's (``/proc``, 10 ms), read while it runs (its pid from the log's ``(EngineCore
pid=N)`` prefix). A field is None where the log
lacks its line (e.g. no ``Graph capturing`` line under ``enforce_eager``), or where an end it
needs is not known. Memory, from the same lines: ``weights_gib``, ``kv_cache_gib`` (``Available
KV cache memory``) and ``graph_memory_gib`` (graph capture's ``took X GiB``).

The engines put ``asdict(StartPhases)`` into the run's extra under ``EXTRA_KEY``
(``store.schema.START_PHASES``; the record and ``start_phases_of``, which reads it back, live in
``store.start_phases``, where the analysis reads them), so every runs row measured on the start
carries it in ``engine_extra`` and in its ``start_<field>`` columns (the
phases and ``start_compile_cached``; ``total_s``, memory and version are in ``engine_extra`` only).
Formats: vLLM 0.26.0 (``v1/engine/core.py``, ``v1/worker/gpu/model_runner.py``,
``compilation/backends.py``, ``compilation/monitor.py``, ``v1/worker/gpu_worker.py``,
``entrypoints/openai/api_server.py``); older wordings (``torch.compile takes``, ``took X GiB memory
and``, ``took X seconds``) read the same.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, Optional, Tuple

from orchestrator.engines.process_group import process_start_ticks
from orchestrator.engines.vllm.log import stamped_lines
from orchestrator.store.start_phases import EXTRA_KEY, StartPhases, start_phases_of  # noqa: F401 (re-exported)

_NUM = r"(\d+(?:\.\d+)?)"
_CORE_INIT = re.compile(r"^Initializing a V1 LLM engine \(v([^)]*)\)")
_WEIGHTS = re.compile(rf"^Model loading took {_NUM} GiB(?: memory)? and {_NUM} s(?:econds)?")
_COMPILE = re.compile(rf"^torch\.compile (?:took|takes) {_NUM} s in total")
_COMPILED = re.compile(r"^Compiling a graph for ")
_CACHED = re.compile(r"^Directly load (?:the compiled graph|AOT compilation)")
_PROFILING = re.compile(rf"^Initial profiling/warmup run took {_NUM} s")
_KV_CACHE = re.compile(rf"^Available KV cache memory: {_NUM} GiB")
_CAPTURE = re.compile(rf"^Graph capturing finished in {_NUM} secs?, took (-?\d+(?:\.\d+)?) GiB")
_INIT_ENGINE = re.compile(rf"^init engine \(profile, create kv cache, warmup model\) took {_NUM} s(?:econds)?")
_SERVER_READY = re.compile(r"^Starting vLLM server on ")
_CORE_PID = re.compile(r"\(EngineCore\w* pid=(\d+)\)")


_LINES = (("core", _CORE_INIT), ("weights", _WEIGHTS), ("compile", _COMPILE), ("profiling", _PROFILING),
          ("kv", _KV_CACHE), ("capture", _CAPTURE), ("init", _INIT_ENGINE), ("server", _SERVER_READY))


@dataclass
class _Found:
    """What a log's lines said: each kind's first match (its groups) and stamp (unix seconds)."""

    groups: Dict[str, Tuple[str, ...]] = field(default_factory=dict)
    stamps: Dict[str, float] = field(default_factory=dict)
    compiled: bool = False  # a graph was compiled
    cached: bool = False  # a graph was loaded from the compile cache

    def num(self, key: str, i: int = 0) -> Optional[float]:
        return float(self.groups[key][i]) if key in self.groups else None


def _scan(text: str, ref: Optional[datetime]) -> _Found:
    found = _Found()
    for stamp, line in stamped_lines(text):
        if stamp is None:
            continue
        found.compiled = found.compiled or bool(_COMPILED.match(line))
        found.cached = found.cached or bool(_CACHED.match(line))
        for key, pattern in _LINES:
            m = pattern.match(line)
            if m and key not in found.groups:
                found.groups[key], found.stamps[key] = m.groups(), _unix(stamp, ref)
            if m:
                break
    return found


def engine_core_pid(text: str) -> Optional[int]:
    """The engine-core process's pid, from the first ``(EngineCore pid=N)`` prefix of a log."""
    m = _CORE_PID.search(text)
    return int(m.group(1)) if m else None


def process_created_unix_s(pid: Optional[int]) -> Optional[float]:
    """When the live process ``pid`` was created (unix seconds, to the kernel's clock tick), or None
    (gone, no pid, or no ``/proc``). From its ``starttime`` against ``/proc/uptime`` (both since
    boot, 10 ms): the boot time ``psutil`` adds is whole seconds, too coarse for a split."""
    start_ticks = process_start_ticks(pid)
    if start_ticks is None:
        return None
    try:
        uptime_s, now = float(Path("/proc/uptime").read_text().split()[0]), time.time()
    except (OSError, ValueError, IndexError):
        return None
    return now - (uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))


def parse_start_phases(text: str, launched_unix_s: Optional[float] = None,
                       ready_unix_s: Optional[float] = None,
                       core_created_unix_s: Optional[float] = None) -> StartPhases:
    """The phases of the start whose log is ``text`` (its first start: later lines of the same
    kind are ignored). ``launched_unix_s`` / ``ready_unix_s``: our ``time.time()`` at launch and
    once ready; without the ready time, a server's ready is its ``Starting vLLM server on``
    stamp. ``core_created_unix_s``: when the engine-core process was created (splits
    ``launch_s``)."""
    known = launched_unix_s if launched_unix_s is not None else ready_unix_s
    f = _scan(text, datetime.fromtimestamp(known) if known is not None else None)
    init_s = f.num("init")
    core_t, init_t = f.stamps.get("core"), f.stamps.get("init")
    ready_t = ready_unix_s if ready_unix_s is not None else f.stamps.get("server")
    warmup_s = _diff(f.stamps.get("capture"), init_t)
    parts = [f.num("compile"), f.num("profiling"), f.num("capture"), warmup_s]
    other = None if init_s is None else max(0.0, init_s - sum(p for p in parts if p is not None))
    return StartPhases(
        launch_s=_diff(launched_unix_s, core_t),
        frontend_s=_diff(launched_unix_s, core_created_unix_s),
        core_boot_s=_not_below_zero(_diff(core_created_unix_s, core_t)),
        model_setup_s=_diff(core_t, None if init_t is None or init_s is None else init_t - init_s),
        weights_s=f.num("weights", 1),
        init_engine_s=init_s,
        compile_s=f.num("compile"),
        compile_cached=(not f.compiled) if (f.compiled or f.cached) else None,
        profiling_s=f.num("profiling"),
        graph_capture_s=f.num("capture"),
        warmup_s=warmup_s,
        init_other_s=_round(other),
        ready_s=_diff(init_t, ready_t),
        total_s=_diff(launched_unix_s, ready_t),
        weights_gib=f.num("weights"),
        kv_cache_gib=f.num("kv"),
        graph_memory_gib=f.num("capture", 1),
        vllm_version=f.groups["core"][0] if "core" in f.groups else None,
    )


def _unix(stamp: str, ref: Optional[datetime]) -> float:
    """A header time ``"MM-DD HH:MM:SS"`` (local time, no year) -> unix seconds at the middle of
    that second, in the year that puts it nearest ``ref`` (now when None)."""
    ref = ref or datetime.now()
    when = datetime.strptime(f"2000-{stamp}", "%Y-%m-%d %H:%M:%S")  # a leap year: 02-29 parses
    candidates = []
    for year in (ref.year - 1, ref.year, ref.year + 1):
        try:
            candidates.append(when.replace(year=year))
        except ValueError:  # 02-29 outside a leap year
            pass
    best = min(candidates, key=lambda d: abs((d - ref).total_seconds()))
    return best.timestamp() + 0.5


def _diff(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None else _round(b - a)


def _not_below_zero(x: Optional[float]) -> Optional[float]:
    """A duration from a stamp (its second's middle, +-0.5 s) to a precise time: a forked engine
    core logs within its first second, which can read as up to -0.5 s; that is 0."""
    return None if x is None else max(0.0, x)


def _round(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(x, 3)
