"""Spare ``vllm serve`` processes: the API server's imports done before the start that needs them.

On the H100 a warm ``vllm serve`` spent 20–25 s between its launch and its first log line
importing torch, transformers and vLLM's CLI and API server (issue 31;
``experiments/benchmarks/active_grid``). Once a server engine's own server is up, it leaves one
*spare* behind (``leave_spare``): ``spare_main`` run in a new interpreter (``BOOT``: a file of
its own, so the spare holds nothing of this package), started with the environment the engine
launched ``vllm serve`` with less the per-start keys (``server.PER_START_KEYS``: the API key, the
step log). The spare forks away from the worker (Ray kills a worker's direct children when the
worker exits) into a session of its own, imports vLLM's CLI and the modules ``vllm serve``
imports before its first line (``spare_main.IMPORTS``), checks that CUDA was not initialised,
and waits on a Unix socket ``<spare dir>/<key>-<pid>.sock`` for one claim, ``idle_s`` at most
(then it removes the socket and exits). ``key`` is a hash of the interpreter, the working
directory, that environment without Ray's own variables, the spare's code and the installed vLLM
and torch (``spare_key``): a spare serves only a start that would have launched the same process.

The next start on the node with that key claims it (``claim_spare``): it sends its ``vllm serve``
arguments, its whole environment, its log path and its own pid and start time; the spare
answers ``ok <pid>``, and on the claimer's ``go`` takes that environment, points its stdout and
stderr at the log and runs ``vllm.entrypoints.cli.main.main()`` with those arguments — the same
code, arguments and environment as a fresh ``vllm serve``, its imports done. Anything else (no
spare, a dead one, a refused or broken answer) is a normal launch. The claimed process is not
the claimer's child (``AdoptedProcess``): a watcher process in its group watches the claimer (pid
*and* start time, every half second) and kills the group, engine core included, when that
process is gone — what ``die_with_parent`` does for a launched server, so a cancelled task's
SIGKILLed worker leaves no server holding the GPU.

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
import socket
import subprocess
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from orchestrator.engines.process_group import process_start_ticks

log = logging.getLogger(__name__)

SPARE_DIR_ENV = "ORCHESTRATOR_SPARE_DIR"
CLAIM_TIMEOUT_S = 5.0  # connect, send, and the spare's answer
LAUNCH_TIMEOUT_S = 30.0  # the spare's first process: start the interpreter, fork, exit
SPARE_MAIN = Path(__file__).with_name("spare_main.py")
# a new interpreter runs the spare's own file (`spare_main`), so it imports nothing of this package
BOOT = "import runpy, sys; sys.exit(runpy.run_path({path!r}, run_name='orchestrator_spare')['main'](sys.argv[1:]))"


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
    """Which starts a spare can serve: a hash of the interpreter, the working directory, the
    environment without ``per_start`` keys and Ray's own variables (a worker's ids and ports), the
    spare's own code and the installed vLLM and torch (a reinstall while a spare waits)."""
    kept = {k: v for k, v in env.items() if k not in per_start and not k.startswith("RAY_")}
    blob = json.dumps([python, os.getcwd(), sorted(kept.items()), hashlib.sha256(SPARE_MAIN.read_bytes()).hexdigest(),
                       [_version(d) for d in ("vllm", "torch")]])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return ""


def _pid_of(path: Path) -> int:
    """The pid in a spare's file name ``<key>-<pid>.sock`` / ``.importing``."""
    try:
        return int(path.name.split(".")[0].rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _alive(path: Path) -> bool:
    """Is the spare a file names still running? (A dead one's file is removed.)"""
    pid = _pid_of(path)
    if pid and process_start_ticks(pid, alive_only=True) is not None:
        return True
    path.unlink(missing_ok=True)
    return False


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
    for path in sorted(d.glob(f"{key}-*.sock"), key=_mtime):  # the oldest first: the least time left
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
    """Send ``message`` to the spare listening on ``path``; once it answered ``ok <pid>``, say
    ``go`` and return its pid (a spare that hears no ``go`` exits: nothing runs unclaimed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(CLAIM_TIMEOUT_S)
        try:
            s.connect(str(path))
        except ConnectionRefusedError:  # a spare that died without removing its socket
            _alive(path)
            return None
        except OSError:
            return None
        try:
            s.sendall(message)
            answer = s.makefile("rb").readline()
            pid = int(answer.split()[1]) if answer.startswith(b"ok ") else None
            if pid is not None:
                s.sendall(b"go\n")
            return pid
        except (OSError, IndexError, ValueError):  # another claimer got it first, it died, or a broken answer
            return None


def waiting_spares(key: str) -> List[Path]:
    """The files of ``key``'s live spares: those waiting (``.sock``) and those still importing
    (``.importing``); a dead spare's file is removed."""
    d = _own_dir()
    if d is None:
        return []
    return [p for p in sorted([*d.glob(f"{key}-*.sock"), *d.glob(f"{key}-*.importing")]) if _alive(p)]


def leave_spare(key: str, python: str, env: Mapping[str, str], idle_s: float, log_path: Path) -> None:
    """Start a spare for ``key`` (see the module doc) unless one already waits or imports; it
    imports in the background and outputs to ``log_path`` until claimed. A spare is a saving,
    never a condition: whatever goes wrong here is a warning."""
    if idle_s <= 0:
        return
    try:
        if not waiting_spares(key):
            _launch_spare(key, python, env, idle_s, log_path)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("vllm_server: no spare left (%s: %s)", type(exc).__name__, exc)


def _launch_spare(key: str, python: str, env: Mapping[str, str], idle_s: float, log_path: Path) -> None:
    spare_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    d = _own_dir()
    if d is None:
        log.warning("vllm_server: %s is not this user's alone: no spare left", spare_dir())
        return
    cmd = [python, "-c", BOOT.format(path=str(SPARE_MAIN)), str(d), key, str(float(idle_s))]
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env), start_new_session=True)
    try:
        proc.wait(timeout=LAUNCH_TIMEOUT_S)  # its first process exits once it has forked the spare away
    except subprocess.TimeoutExpired:
        proc.kill()
        log.warning("vllm_server: the spare's first process did not exit in %.0f s: killed", LAUNCH_TIMEOUT_S)
        return
    log.info("vllm_server: left a spare vllm serve (key %s, %.0f s idle at most); log: %s", key, idle_s, log_path)
