"""The spare process itself (see ``spare``): imports, waits for one claim, becomes ``vllm serve``.

Run by ``spare.leave_spare`` as ``runpy.run_path`` of this file in a new interpreter (``spare.BOOT``),
so the spare imports nothing of this package — stdlib and vLLM only — and holds what a fresh
``vllm serve`` would hold. ``main(dir, key, idle_s)``:

1. fork away from the launching worker (Ray kills a worker's direct children at its exit) into a
   session of its own, and mark ``<dir>/<key>-<pid>.importing`` (``leave_spare`` counts it: one
   spare per key at a time);
2. import ``IMPORTS`` under ``SCHED_IDLE`` where a throw-away child showed that this process may
   go back to ``SCHED_OTHER`` afterwards (root with ``CAP_SYS_NICE``, or ``RLIMIT_NICE``), at
   normal priority otherwise; every thread back to ``SCHED_OTHER`` after; at most
   ``IMPORT_LIMIT_S`` (``SIGALRM``);
3. refuse to wait if CUDA got initialised or vLLM's environment cache enabled (the claim's
   environment would not be read);
4. listen on ``<dir>/<key>-<pid>.sock`` (bound under another name and renamed once listening, so
   a socket file always answers) for ``idle_s``, then remove it and exit;
5. on a claim (one JSON line: ``argv``, ``env``, ``log``, ``claimer_pid``, ``claimer_ticks``):
   check it and open its log, answer ``ok <pid>``, and go on only on the claimer's ``go`` (a
   claimer that gave up closes instead: the spare exits); take the environment and the log,
   fork the watcher (``_watch``), and run ``vllm.entrypoints.cli.main.main()`` with the claim's
   arguments.

The watcher is a process of the server's group that ignores SIGTERM: when the claimer is gone it
SIGTERMs the group and SIGKILLs it ``KILL_GRACE_S`` later — whatever the server's processes do
with the SIGTERM; when the server is gone (a normal stop) it exits.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
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
IMPORT_LIMIT_S = 600  # a spare whose imports take longer (a stuck filesystem) is killed by SIGALRM
CLAIM_TIMEOUT_S = 5.0  # reading the claim, and the claimer's go
WATCH_INTERVAL_S = 0.5
KILL_GRACE_S = 5.0
CLAIM_FIELDS = {"argv": list, "env": dict, "log": str, "claimer_pid": int}


def _say(message: str) -> None:
    """A line to the spare's log (no logging handler: the claimed server's logging stays vLLM's)."""
    print(f"spare {os.getpid()}: {message}", file=sys.stderr, flush=True)


def main(args: Sequence[str]) -> int:
    directory, key, idle_s = Path(args[0]), args[1], float(args[2])
    if os.fork() > 0:
        os._exit(0)
    os.setsid()  # its own process group, led by itself: the claimer kills it by its pid
    marker = directory / f"{key}-{os.getpid()}.importing"
    marker.touch()
    try:
        cli = _prepare()
        return 1 if cli is None else _wait_and_serve(cli, directory, key, idle_s, marker)
    finally:
        marker.unlink(missing_ok=True)


def _prepare():
    """Steps 2 and 3 of the module doc; -> the CLI module, or None (not a spare)."""
    t0 = time.monotonic()
    idle = _may_leave_idle()
    if idle:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    signal.alarm(IMPORT_LIMIT_S)
    cli = _import_all()
    signal.alarm(0)
    if cli is None:
        return None
    if idle and not _normal_priority():
        _say("could not put every thread back to SCHED_OTHER after the imports: not a spare")
        return None
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        _say("CUDA was initialised by the imports: not a spare")
        return None
    envs = sys.modules.get("vllm.envs")
    if envs is not None and getattr(envs, "_is_envs_cache_enabled", lambda: False)():
        _say("vLLM's environment cache was enabled by the imports (the claim's environment would not be read): "
             "not a spare")
        return None
    _say(f"imports done in {time.monotonic() - t0:.1f} s ({'under SCHED_IDLE' if idle else 'at normal priority'})")
    return cli


def _wait_and_serve(cli, directory: Path, key: str, idle_s: float, marker: Path) -> int:
    """Steps 4 and 5 of the module doc."""
    path = directory / f"{key}-{os.getpid()}.sock"
    binding = directory / f".{key}-{os.getpid()}.binding"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(binding))
    listener.listen(1)
    os.rename(binding, path)  # a socket file that exists answers
    marker.unlink(missing_ok=True)
    listener.settimeout(idle_s)
    _say(f"waiting on {path} for {idle_s:.0f} s at most")
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
            reader = conn.makefile("rb")
            claim = _checked(json.loads(reader.readline()))
            log_fd = os.open(claim["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            conn.sendall(f"ok {os.getpid()}\n".encode())
            go = reader.readline()
        except (OSError, ValueError) as exc:
            _say(f"a claim that failed ({type(exc).__name__}: {exc}): exiting")
            return 1
        if go != b"go\n":
            _say("the claimer gave up before its go: exiting")
            return 1
    _say(f"claimed by {claim['claimer_pid']}: vllm serve from here on, in {claim['log']}")
    _become(claim, log_fd)
    sys.argv = [str(cli.__file__), *claim["argv"]]
    cli.main()
    return 0


def _checked(claim: object) -> Dict:
    if not isinstance(claim, dict) or any(not isinstance(claim.get(k), t) for k, t in CLAIM_FIELDS.items()):
        raise ValueError(f"a claim has {', '.join(f'{k} ({t.__name__})' for k, t in CLAIM_FIELDS.items())}")
    return claim


def _may_leave_idle() -> bool:
    """Whether this process could go back from ``SCHED_IDLE`` to ``SCHED_OTHER``: tried in a
    throw-away child (a process that cannot is stuck in ``SCHED_IDLE``)."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        _say("importing at normal priority (this process could not leave SCHED_IDLE afterwards)")
        return False
    return True


def _normal_priority() -> bool:
    """Every thread of this process back to ``SCHED_OTHER`` (threads the imports started inherited
    ``SCHED_IDLE``; one that exits meanwhile is skipped)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setscheduler(int(tid), os.SCHED_OTHER, os.sched_param(0))
        except ProcessLookupError:
            continue
        except OSError:
            return False
    return True


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


def _become(claim: Dict, log_fd: int) -> None:
    """Take the claimer's environment and log, and fork the watcher."""
    os.environ.clear()
    os.environ.update(claim["env"])
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    server = os.getpid()
    if os.fork() == 0:  # pragma: no cover - the watcher
        _watch(server, claim["claimer_pid"], claim.get("claimer_ticks"))


def _watch(server: int, claimer: int, claimer_ticks: Optional[int]) -> None:
    """The watcher (module doc): never returns."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server_ticks = _live_start_ticks(server)
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if _live_start_ticks(server) != server_ticks:  # the server stopped: its claimer stops the rest
            os._exit(0)
        now = _live_start_ticks(claimer)
        if now is None or (claimer_ticks is not None and now != claimer_ticks):
            break
    _say(f"the claimer {claimer} is gone: stopping this server and its process group")
    os.killpg(os.getpgid(0), signal.SIGTERM)
    time.sleep(KILL_GRACE_S)
    os.killpg(os.getpgid(0), signal.SIGKILL)
    os._exit(0)


def _live_start_ticks(pid: int) -> Optional[int]:
    """Process ``pid``'s start time (clock ticks since boot), None once it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])
