"""The reaper with real processes: a "worker" process starts an engine-like tree (a server in its
own session, as ``vllm serve`` is started, whose child stays in its group, as EngineCore does)
and is SIGKILLed, as ``ray.cancel(force=True)`` does. With the reaper nothing survives; without
it the grandchild does (what happened on the H200). A normal exit touches nothing, processes
older than the reaper are never targets, and a recycled PID is never hit."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from orchestrator.worker import reaper
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the reaper reads /proc (Linux)")

WORKER = textwrap.dedent("""
    import subprocess, sys, time
    from orchestrator.engines.process_group import die_with_parent
    from orchestrator.worker.reaper import Reaper

    SERVER = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); print(c.pid, flush=True); time.sleep(300)"
    mode = sys.argv[1]
    old = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])  # before the reaper
    reaper = Reaper(interval_s=0.05, grace_s=2.0)
    if mode != "bare":
        reaper.__enter__()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True,
                              start_new_session=True, preexec_fn=die_with_parent())
    core = int(server.stdout.readline())
    time.sleep(0.5)  # at least one note of the tree
    print(old.pid, server.pid, core, flush=True)
    if mode == "exit":
        reaper.__exit__(None, None, None)
        print("exited", flush=True)
    time.sleep(300)
""")


def alive(pid: int) -> bool:
    p = reaper.read_proc(pid)
    return p is not None and p.state != "Z"


def wait_gone(pids, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def start_worker(mode: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", WORKER, mode], stdout=subprocess.PIPE, text=True, env=env)
    old, server, core = (int(x) for x in proc.stdout.readline().split())
    return proc, old, server, core


def cleanup(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_killed_worker_leaves_no_engine_process():
    worker, old, server, core = start_worker("reaper")
    try:
        assert alive(server) and alive(core)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert wait_gone([server, core], timeout_s=8.0), "the server's child outlived the killed worker"
        assert alive(old), "a process older than the reaper is not the engine's"
    finally:
        cleanup(server, core, old)


def test_without_the_reaper_the_grandchild_survives():
    """The control: what the H200 showed (an EngineCore left holding the GPU)."""
    worker, old, server, core = start_worker("bare")
    try:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert wait_gone([server], timeout_s=5.0)  # PR_SET_PDEATHSIG reaches the direct child...
        time.sleep(1.0)
        assert alive(core)  # ...not its child
        assert reaper.read_proc(core).ppid != worker.pid
    finally:
        cleanup(server, core, old)


def test_normal_exit_touches_nothing():
    worker, old, server, core = start_worker("exit")
    try:
        assert worker.stdout.readline().strip() == "exited"
        worker.send_signal(signal.SIGKILL)  # the watcher is gone: this death is not reaped
        worker.wait()
        time.sleep(1.5)
        assert alive(core)
    finally:
        cleanup(server, core, old)


def test_a_recycled_pid_is_never_a_target():
    me = reaper.read_proc(os.getpid())
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        now = reaper.processes()
        p = now[other.pid]
        recycled = {other.pid: p._replace(start_ticks=p.start_ticks - 1)}  # same PID, another process
        assert reaper._targets(recycled, now) == {}
        assert other.pid in reaper._targets({other.pid: p}, now)
        assert os.getpid() not in reaper._targets({os.getpid(): me}, now)
    finally:
        other.kill()
        other.wait()


def test_descendants_walks_the_tree():
    table = {10: reaper.Proc(1, 10, 5, "S"), 11: reaper.Proc(10, 11, 6, "S"), 12: reaper.Proc(11, 11, 7, "S"),
             13: reaper.Proc(1, 13, 8, "S")}
    assert set(reaper.descendants(10, table)) == {11, 12}
    assert reaper.descendants(13, table) == {}
