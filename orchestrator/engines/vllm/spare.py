"""Spare ``vllm serve`` processes: the API server's imports done before the start that needs them.

On the H100 a warm ``vllm serve`` spent 20–25 s between its launch and its first log line
importing torch, transformers and vLLM's CLI and API server (issue 31;
``experiments/benchmarks/active_grid``). Once a server engine's own server is up, it leaves one
*spare* behind (``leave_spare``): ``main`` of this module in a new interpreter (``BOOT``), started with the
environment the engine launched ``vllm serve`` with less the per-start keys (``PER_START_KEYS``:
the API key, the step log). The spare forks away from the worker (Ray kills a worker's direct
children when the worker exits) into a session of its own, imports vLLM's CLI and the modules
``vllm serve`` imports before its first line (``IMPORTS``), checks that CUDA was not initialised,
and waits on a Unix socket ``<spare dir>/<key>-<pid>.sock`` for one claim, ``idle_s`` at most
(then it removes the socket and exits). ``key`` is a hash of the interpreter, the working
directory and that environment without Ray's own variables (``spare_key``): a spare serves only
a start that would have launched the same process.

The next start on the node with that key claims it (``claim_spare``): it sends its ``vllm serve``
arguments, its whole environment, its log path and its own pid and start time; the spare
answers ``ok <pid>``, takes that environment, points its stdout and stderr at the log and runs
``vllm.entrypoints.cli.main.main()`` with those arguments — the same code, arguments and
environment as a fresh ``vllm serve``, its imports done. Anything else (no spare, a dead one, a
refused or broken answer) is a normal launch. The claimed process is not the claimer's child
(``AdoptedProcess``): it watches its claimer (pid *and* start time, every ``WATCH_INTERVAL_S``)
and kills its own process group, engine core included, when that process is gone — what
``die_with_parent`` does for a launched server, so a cancelled task's SIGKILLed worker leaves no
server holding the GPU.

A spare imports while the engine that left it runs its first cell, under ``SCHED_IDLE`` (CPU time
no other process wants: the measured processes keep theirs; then every thread back to
``SCHED_OTHER``, or it is no spare — where it could not leave ``SCHED_IDLE``, non-root without
``RLIMIT_NICE``, it imports at normal priority on one core). It holds no GPU before its claim
(it refuses to wait if the imports initialised CUDA, or enabled vLLM's environment cache, which
would hide the claim's environment), and its memory (~1–2 GiB of imported modules) until its
claim or ``idle_s``.
``engine.vllm.server_spare_idle_s=0`` leaves no spare.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from orchestrator.engines.process_group import process_start_ticks

log = logging.getLogger(__name__)

SPARE_DIR_ENV = "ORCHESTRATOR_SPARE_DIR"
CLI_MODULE = "vllm.entrypoints.cli.main"
# what `vllm serve` imports before its first log line (main() imports the subcommand modules
# itself; a name a vLLM version lacks is skipped)
IMPORTS = (CLI_MODULE, "vllm.entrypoints.cli.serve", "vllm.entrypoints.cli.openai",
           "vllm.entrypoints.cli.run_batch", "vllm.entrypoints.cli.collect_env", "vllm.entrypoints.cli.benchmark.main",
           "vllm.entrypoints.openai.api_server", "vllm.engine.arg_utils", "vllm.v1.engine.async_llm",
           "vllm.v1.engine.core")
CLAIM_TIMEOUT_S = 5.0  # connect, send, and the spare's answer
WATCH_INTERVAL_S = 0.5
KILL_GRACE_S = 5.0


def spare_dir() -> Path:
    """``$ORCHESTRATOR_SPARE_DIR`` or ``/tmp/orchestrator-spares-<uid>`` (short: a socket's path
    has at most 107 bytes)."""
    return Path(os.environ.get(SPARE_DIR_ENV) or f"/tmp/orchestrator-spares-{os.getuid()}")


def _own_dir() -> Optional[Path]:
    """The spare directory if it exists and is this user's alone (a claim sends the API key)."""
    d = spare_dir()
    try:
        st = d.stat()
    except OSError:
        return None
    return d if st.st_uid == os.getuid() and not st.st_mode & 0o077 else None


def spare_key(python: str, env: Mapping[str, str], per_start: Sequence[str]) -> str:
    """Which starts a spare can serve: a hash of the interpreter, the working directory and the
    environment without ``per_start`` keys and Ray's own variables (a worker's ids and ports)."""
    kept = {k: v for k, v in env.items() if k not in per_start and not k.startswith("RAY_")}
    blob = json.dumps([python, os.getcwd(), sorted(kept.items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class AdoptedProcess:
    """A claimed spare seen from its claimer: ``pid`` (its process group's too) and ``poll()``
    like ``subprocess.Popen``'s, without the exit code (not our child): -1 once it is gone."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: Optional[int] = None
        self._ticks = process_start_ticks(pid)

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            ticks = process_start_ticks(self.pid, alive_only=True)
            if ticks is None or ticks != self._ticks:
                self.returncode = -1
        return self.returncode


def claim_spare(key: str, argv: List[str], env: Mapping[str, str], log_path: Path) -> Optional[AdoptedProcess]:
    """The first spare of ``key`` that accepts ``vllm serve`` with ``argv`` (what follows the
    module on its command line), ``env`` and ``log_path``; None when none does."""
    d = _own_dir()
    if d is None:
        return None
    me = {"argv": argv, "env": dict(env), "log": str(log_path), "claimer_pid": os.getpid(),
          "claimer_ticks": process_start_ticks(os.getpid())}
    message = (json.dumps(me) + "\n").encode()
    for path in sorted(d.glob(f"{key}-*.sock"), key=_mtime):
        pid = _claim(path, message)
        if pid is not None:
            log.info("vllm_server: claimed the spare vllm serve %d (%s)", pid, path.name)
            return AdoptedProcess(pid)
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _claim(path: Path, message: bytes) -> Optional[int]:
    """Send ``message`` to the spare listening on ``path``; its pid once it answered ``ok``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(CLAIM_TIMEOUT_S)
        try:
            s.connect(str(path))
        except ConnectionRefusedError:  # a spare that died without removing its socket
            path.unlink(missing_ok=True)
            return None
        except OSError:
            return None
        try:
            s.sendall(message)
            answer = s.makefile("rb").readline()
        except OSError:  # another claimer got it first, or it died meanwhile
            return None
    if not answer.startswith(b"ok "):
        return None
    try:
        return int(answer.split()[1])
    except (IndexError, ValueError):
        return None


def waiting_spares(key: str) -> List[Path]:
    """The sockets of ``key``'s spares that wait (or died without removing their socket)."""
    d = _own_dir()
    return sorted(d.glob(f"{key}-*.sock")) if d is not None else []


def leave_spare(key: str, python: str, env: Mapping[str, str], idle_s: float, log_path: Path) -> None:
    """Start a spare for ``key`` (see the module doc) unless one already waits; it imports in the
    background and outputs to ``log_path`` until claimed."""
    if idle_s <= 0 or waiting_spares(key):
        return
    spare_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    d = _own_dir()
    if d is None:
        log.warning("vllm_server: %s is not this user's alone: no spare left", spare_dir())
        return
    root = str(Path(__file__).resolve().parents[3])
    cmd = [python, "-c", BOOT.format(root=root), str(d), key, str(float(idle_s))]
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env), start_new_session=True)
    proc.wait()  # its first process exits once it has forked the spare away
    log.info("vllm_server: left a spare vllm serve (key %s, %.0f s idle at most); log: %s", key, idle_s, log_path)


# ============================================================================ the spare itself


# `python -c BOOT dir key idle_s`: this module imported with the package root on sys.path for the
# import only, so the spare's sys.path is the one `python -m vllm.entrypoints.cli.main` would have
BOOT = ("import sys; root = {root!r}; added = root not in sys.path; added and sys.path.append(root); "
        "from orchestrator.engines.vllm.spare import main; added and sys.path.remove(root); "
        "sys.exit(main(sys.argv[1:]))")


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
        now = process_start_ticks(pid, alive_only=True)
        if now is None or (ticks is not None and now != ticks):
            break
    _say(f"the claimer {pid} is gone: stopping this server and its process group")
    os.killpg(os.getpid(), signal.SIGTERM)
    time.sleep(KILL_GRACE_S)
    os.killpg(os.getpid(), signal.SIGKILL)
