"""The spare process itself (see ``spare``): imports, waits for one claim, becomes ``vllm serve``.

Run by ``spare.leave_spare`` as ``runpy.run_path`` of this file in a new interpreter (``spare.BOOT``),
so the spare imports nothing of this package — stdlib and vLLM only — and holds what a fresh
``vllm serve`` would hold. ``main(dir, key, idle_s)``: fork away from the launching worker into a
session of its own; import ``IMPORTS`` (under ``SCHED_IDLE`` where it can be left again); refuse
to wait if CUDA or vLLM's environment cache got initialised; listen on ``<dir>/<key>-<pid>.sock``
for ``idle_s``; on a claim (one JSON line: ``argv``, ``env``, ``log``, ``claimer_pid``,
``claimer_ticks``) answer ``ok <pid>``, take the environment and the log, watch the claimer, and
run ``vllm.entrypoints.cli.main.main()`` with the claim's arguments.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

CLI_MODULE = "vllm.entrypoints.cli.main"
# what `vllm serve` imports before its first log line (main() imports the subcommand modules
# itself; a name a vLLM version lacks is skipped)
IMPORTS = (CLI_MODULE, "vllm.entrypoints.cli.serve", "vllm.entrypoints.cli.openai",
           "vllm.entrypoints.cli.run_batch", "vllm.entrypoints.cli.collect_env", "vllm.entrypoints.cli.benchmark.main",
           "vllm.entrypoints.openai.api_server", "vllm.engine.arg_utils", "vllm.v1.engine.async_llm",
           "vllm.v1.engine.core")
CLAIM_TIMEOUT_S = 5.0  # reading the claim
WATCH_INTERVAL_S = 0.5
KILL_GRACE_S = 5.0


def _say(message: str) -> None:
    """A line to the spare's log (no logging handler: the claimed server's logging stays vLLM's)."""
    print(f"spare {os.getpid()}: {message}", file=sys.stderr, flush=True)


def main(args: Sequence[str]) -> int:
    directory, key, idle_s = Path(args[0]), args[1], float(args[2])
    if os.fork() > 0:  # away from the worker: Ray kills a worker's direct children at its exit
        os._exit(0)
    os.setsid()  # its own process group, led by itself: the claimer kills it by its pid
    t0 = time.monotonic()
    idle = _idle_priority()
    cli = _import_all()
    if cli is None:
        return 1
    if idle and not _normal_priority():
        _say("could not leave SCHED_IDLE after the imports: not a spare")
        return 1
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        _say("CUDA was initialised by the imports: not a spare")
        return 1
    envs = sys.modules.get("vllm.envs")
    if envs is not None and getattr(envs, "_is_envs_cache_enabled", lambda: False)():
        _say("vLLM's environment cache was enabled by the imports (the claim's environment would not be read): "
             "not a spare")
        return 1
    path = directory / f"{key}-{os.getpid()}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(idle_s)
    _say(f"imports done in {time.monotonic() - t0:.1f} s ({'under SCHED_IDLE' if idle else 'at normal priority'}); "
         f"waiting on {path} for {idle_s:.0f} s at most")
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        _say(f"not claimed in {idle_s:.0f} s: exiting")
        return 0
    finally:
        listener.close()
        path.unlink(missing_ok=True)  # nobody else connects from here on
    with conn:
        conn.settimeout(CLAIM_TIMEOUT_S)
        try:
            claim = json.loads(conn.makefile("rb").readline())
            conn.sendall(f"ok {os.getpid()}\n".encode())
        except (OSError, ValueError) as exc:
            _say(f"a broken claim ({exc}): exiting")
            return 1
    _say(f"claimed by {claim['claimer_pid']}: vllm serve from here on, in {claim['log']}")
    _become(claim)
    sys.argv = [str(cli.__file__), *claim["argv"]]
    cli.main()
    return 0


def _idle_priority() -> bool:
    """Import under ``SCHED_IDLE`` (CPU time nobody else wants: the measured cell's processes
    keep theirs) where this process may leave it afterwards (root, or ``RLIMIT_NICE`` allowing
    nice 0); True when it did."""
    try:
        import resource

        may_leave = os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20 - os.nice(0)
        if may_leave:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return True
    except (AttributeError, ImportError, OSError):  # not Linux
        pass
    _say("importing at normal priority (SCHED_IDLE could not be left afterwards)")
    return False


def _normal_priority() -> bool:
    """Every thread of this process back to ``SCHED_OTHER`` (threads the imports started
    inherited ``SCHED_IDLE``)."""
    try:
        for tid in os.listdir("/proc/self/task"):
            os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        return False
    return all(os.sched_getscheduler(int(tid)) == os.SCHED_OTHER for tid in os.listdir("/proc/self/task"))


def _import_all():
    """Import ``IMPORTS``; -> the CLI module (None when vLLM's CLI does not import)."""
    import importlib

    cli = None
    for name in IMPORTS:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a module this vLLM lacks, or one that fails: main() will say
            if name == CLI_MODULE:
                _say(f"{name} does not import ({exc}): not a spare")
                return None
            _say(f"skipped {name} ({type(exc).__name__}: {exc})")
            continue
        if name == CLI_MODULE:
            cli = module
    return cli


def _become(claim: Dict) -> None:
    """Take the claimer's environment and log, and watch the claimer."""
    os.environ.clear()
    os.environ.update(claim["env"])
    fd = os.open(claim["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    threading.Thread(target=_watch, args=(int(claim["claimer_pid"]), claim.get("claimer_ticks")),
                     name="spare-watch", daemon=True).start()


def _watch(pid: int, ticks: Optional[int]) -> None:
    """Kill this process group once the claimer (``pid`` with start time ``ticks``) is gone."""
    while True:
        time.sleep(WATCH_INTERVAL_S)
        now = _live_start_ticks(pid)
        if now is None or (ticks is not None and now != ticks):
            break
    _say(f"the claimer {pid} is gone: stopping this server and its process group")
    os.killpg(os.getpid(), signal.SIGTERM)
    time.sleep(KILL_GRACE_S)
    os.killpg(os.getpid(), signal.SIGKILL)


def _live_start_ticks(pid: int) -> Optional[int]:
    """Process ``pid``'s start time (clock ticks since boot), None once it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])
