"""The process group of a server subprocess: ask Linux to end it with its parent, and kill the
whole group (SIGTERM, then SIGKILL) at stop, counting orphaned zombies as gone."""
from __future__ import annotations

import os
import signal
import time
from typing import Dict, List, Optional, Protocol

STOP_GRACE_S = 20.0


def die_with_parent():
    """A ``preexec_fn`` that asks Linux to SIGTERM the server when the worker that started it
    dies (PR_SET_PDEATHSIG), so no orphan keeps the GPU; None where prctl is unavailable.
    Everything is resolved here, in the parent: the child only makes one C call."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(1, sigterm)  # 1 = PR_SET_PDEATHSIG

    return preexec


class ServerProcess(Protocol):
    """A server's first process as ``kill_group`` needs it: ``subprocess.Popen``, or a process
    this one did not start (``engines.vllm.spare.AdoptedProcess``). Its pid leads its group."""

    pid: int
    returncode: Optional[int]

    def poll(self) -> Optional[int]: ...


def kill_group(proc: ServerProcess, grace_s: float = STOP_GRACE_S) -> Dict:
    """SIGTERM the process group led by ``proc``, SIGKILL what is left after ``grace_s``.
    -> {"stop_signal": "SIGTERM"|"SIGKILL"|"none", "stop_s": seconds}."""
    pgid, t0 = proc.pid, time.monotonic()
    sent = "none"
    try:  # a group can empty between a look and a signal (a leader not ours leaves no zombie)
        if _group_alive(proc, pgid):
            os.killpg(pgid, signal.SIGTERM)
            sent = "SIGTERM"
            if not _wait_group(proc, pgid, grace_s):
                os.killpg(pgid, signal.SIGKILL)
                sent = "SIGKILL"
                _wait_group(proc, pgid, 10.0)
    except ProcessLookupError:
        pass
    proc.poll()
    return {"stop_signal": sent, "stop_s": time.monotonic() - t0}


def _group_alive(proc: ServerProcess, pgid: int) -> bool:
    """Does any live (non-zombie) process remain in group ``pgid``? Orphaned zombies wait for
    a PID 1 that may never reap them (containers): they hold nothing and do not count."""
    proc.poll()  # reap the leader once it exits
    members = group_states(pgid)
    if members is not None:
        return any(state != "Z" for state in members)
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def process_start_ticks(pid: Optional[int], alive_only: bool = False) -> Optional[int]:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22: with
    the pid, what names one process — pids are recycled); None when it is gone, there is no pid
    or no ``/proc``, or (``alive_only``) it is a zombie."""
    fields = _stat_fields(pid) if pid is not None else None
    if fields is None or (alive_only and fields[0] == "Z"):
        return None
    return int(fields[19])


def _stat_fields(pid) -> Optional[List[str]]:
    """``/proc/<pid>/stat`` after ``(comm)``: state, ppid, pgrp, ... (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def group_states(pgid: int) -> Optional[List[str]]:
    """States (``R``, ``S``, ``Z``...) of the processes in group ``pgid`` from /proc; None
    without /proc."""
    if not os.path.isdir("/proc/self"):
        return None
    states = []
    for entry in os.listdir("/proc"):
        fields = _stat_fields(entry) if entry.isdigit() else None  # None too when it exited meanwhile
        if fields is not None and int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def _wait_group(proc: ServerProcess, pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _group_alive(proc, pgid):
            return True
        time.sleep(0.1)
    return not _group_alive(proc, pgid)
