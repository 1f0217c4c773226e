"""Kill what an engine left running when the worker that started it dies.

A Ray task cancelled with ``force=True`` (an interrupted sweep, a cell past its timeout) is a
SIGKILLed worker: no ``finally`` runs, so no engine is stopped. ``PR_SET_PDEATHSIG`` reaches the
worker's direct children only; vLLM's ``EngineCore`` is a grandchild under ``vllm serve`` (and a
child of the worker under offline vLLM), and on the H200 one survived an interrupted study,
reparented to PID 1 and holding 129 GiB, so every later cell of the machine failed for memory.

``Reaper`` is a context manager around one engine's life in the worker. It starts a small
watcher process (``python -m orchestrator.worker.reaper``) whose stdin is a pipe from the worker. The
watcher forks away from the worker at once (its first process exits): Ray SIGKILLs a dead
worker's direct children — that is how ``vllm serve`` died while its EngineCore lived on — so
the watcher must not be one. The watcher notes, every ``interval_s``, the worker's descendants that did not
exist when it started (PID, start time and process group). When the pipe reaches EOF without
the word ``done`` — the worker died — it sends SIGTERM to every noted process still alive (same
PID *and* start time, so a recycled PID is never hit) and to the rest of their process groups,
waits ``grace_s``, then SIGKILLs what is left. A normal exit writes ``done`` and the watcher
leaves everything alone (the engine stopped its own processes). Linux only (``/proc``); elsewhere
``Reaper`` does nothing.
"""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import time
from typing import IO, Dict, Iterable, NamedTuple, Optional, Tuple

log = logging.getLogger(__name__)

INTERVAL_S = 0.25
GRACE_S = 10.0
DONE = b"done\n"
READY = b"ready "
READY_TIMEOUT_S = 10.0


class Proc(NamedTuple):
    """One process as ``/proc/<pid>/stat`` shows it: parent, process group, start time (clock ticks
    since boot) and state letter."""

    ppid: int
    pgid: int
    start_ticks: int
    state: str


def processes() -> Dict[int, Proc]:
    """Every process of this host's PID namespace (empty without ``/proc``)."""
    out: Dict[int, Proc] = {}
    if not os.path.isdir("/proc/self"):
        return out
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            p = read_proc(int(entry))
            if p is not None:
                out[int(entry)] = p
    return out


def read_proc(pid: int) -> Optional[Proc]:
    """``/proc/<pid>/stat`` of one process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice num_threads itrealvalue starttime ...
    return Proc(ppid=int(fields[1]), pgid=int(fields[2]), start_ticks=int(fields[19]), state=fields[0])


def descendants(root: int, table: Dict[int, Proc]) -> Dict[int, Proc]:
    """The processes below ``root`` in ``table`` (children, their children, ...)."""
    children: Dict[int, list] = {}
    for pid, p in table.items():
        children.setdefault(p.ppid, []).append(pid)
    out, todo = {}, list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in out:
            out[pid] = table[pid]
            todo.extend(children.get(pid, ()))
    return out


def _targets(noted: Dict[int, Proc], table: Dict[int, Proc]) -> Dict[int, Proc]:
    """What to kill now: noted processes still alive as themselves (same start time, not zombies),
    every live member of a process group that a noted process leads (``vllm serve`` runs in its
    own session: its EngineCore is in its group even when it was born after the last note; a
    group the worker shares with Ray is never touched), and the descendants of all of those."""
    alive = {pid: table[pid] for pid, p in noted.items()
             if pid in table and table[pid].start_ticks == p.start_ticks and table[pid].state != "Z"}
    groups = {pid for pid, p in noted.items() if p.pgid == pid} - {0, 1, os.getpgrp()}
    found = dict(alive)
    found.update({pid: p for pid, p in table.items() if p.pgid in groups and p.state != "Z"})
    for pid in list(found):
        found.update({d: p for d, p in descendants(pid, table).items() if p.state != "Z"})
    found.pop(os.getpid(), None)
    return found


def _signal_all(targets: Iterable[int], sig: int) -> None:
    for pid in targets:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def reap(noted: Dict[int, Proc], grace_s: float) -> int:
    """SIGTERM what is left of ``noted`` (see ``_targets``), SIGKILL it after ``grace_s``.
    -> how many processes were signalled."""
    targets = _targets(noted, processes())
    if not targets:
        return 0
    _signal_all(targets, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _targets(targets, processes()):
            return len(targets)
        time.sleep(0.1)
    _signal_all(_targets(targets, processes()), signal.SIGKILL)
    return len(targets)


def watch(worker_pid: int, stdin_fd: int, interval_s: float = INTERVAL_S, grace_s: float = GRACE_S,
          ready_fd: Optional[int] = None) -> int:
    """The watcher's loop (see the module docstring); writes ``ready`` to ``ready_fd`` once it
    knows which processes were there before. -> processes signalled (0 after ``done``)."""
    before = set(descendants(worker_pid, processes()))
    if ready_fd is not None:
        os.write(ready_fd, READY + str(os.getpid()).encode() + b"\n")
    noted: Dict[int, Proc] = {}
    received = b""
    while True:
        ready, _, _ = select.select([stdin_fd], [], [], interval_s)
        if ready:
            chunk = os.read(stdin_fd, 64)
            received += chunk
            if DONE in received:
                return 0
            if not chunk:  # EOF without "done": the worker died
                return reap(noted, grace_s)
        noted.update({pid: p for pid, p in descendants(worker_pid, processes()).items() if pid not in before})


def _pipes(proc: subprocess.Popen[bytes]) -> Tuple[IO[bytes], IO[bytes]]:
    """The watcher's stdin and stdout (``Reaper`` opens both as pipes)."""
    if proc.stdin is None or proc.stdout is None:
        raise ValueError("the watcher was started without its pipes")
    return proc.stdin, proc.stdout


class Reaper:
    """``with Reaper():`` around an engine's life in a worker (see the module docstring)."""

    def __init__(self, interval_s: float = INTERVAL_S, grace_s: float = GRACE_S):
        self.interval_s, self.grace_s = interval_s, grace_s
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.watcher_pid: Optional[int] = None

    def __enter__(self) -> "Reaper":
        if not os.path.isdir("/proc/self"):
            return self
        cmd = [sys.executable, "-m", "orchestrator.worker.reaper", str(os.getpid()), str(self.interval_s), str(self.grace_s)]
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:  # no watcher is no reason to fail the cell
            log.warning("reaper: could not start the watcher (%s); an interrupted engine may outlive its worker", exc)
            return self
        # what the engine starts from here on is new to the watcher: wait until it has looked
        stdout = _pipes(self.proc)[1]
        ready, _, _ = select.select([stdout], [], [], READY_TIMEOUT_S)
        line = stdout.readline() if ready else b""
        if line.startswith(READY):
            self.watcher_pid = int(line[len(READY):])
            self.proc.wait()  # the first process, which forked the watcher and exited
        else:
            log.warning("reaper: the watcher did not start within %.0f s", READY_TIMEOUT_S)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is None:
            return
        stdin, stdout = _pipes(self.proc)
        try:
            stdin.write(DONE)
            stdin.close()
        except OSError:
            pass
        if self.watcher_pid is None:  # it never said ready: do not leave it waiting
            self.proc.kill()
        self.proc.wait()
        stdout.close()


def main(argv: Optional[list] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    worker_pid, interval_s, grace_s = int(args[0]), float(args[1]), float(args[2])
    if os.fork() > 0:  # not a child of the worker (see the module docstring)
        os._exit(0)
    watch(worker_pid, sys.stdin.fileno(), interval_s, grace_s, ready_fd=sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
