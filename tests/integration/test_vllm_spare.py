"""Spare ``vllm serve`` processes (``engines.vllm.spare``) on a CPU, against the fake ``vllm serve``
of ``test_client_vllm_server`` (a stand-in ``vllm.entrypoints.cli.main`` with a ``main()``): a
server, once up, leaves a spare that imported the CLI; the next start with the same launch
claims it and it serves with that start's own arguments, API key and log; a spare that dies
during its start is replaced by a normal launch; a claimer that gives up before its ``go``
leaves nothing running; a spare whose claimer is SIGKILLed takes its process group down, SIGKILL
included; an unclaimed one exits after its idle time; what decides which starts a spare may
serve; ``server_spare_idle_s=0`` and a spawned engine core leave none. Spares import under
``SCHED_IDLE``, so the waits are long enough for a loaded machine."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

from orchestrator.engines.vllm import spare
from orchestrator.engines.vllm.server import PER_START_KEYS
from orchestrator.store.start_phases import EXTRA_KEY
from tests.conftest import free_port
from tests.integration.test_client_vllm_server import ServerEngine, cfg, child_alive, fake  # noqa: F401 (fixture)


def wait_for(predicate, timeout_s=240.0, what=""):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.1)


def spare_logs() -> str:
    return "".join(p.read_text() for p in Path(os.environ["ORCHESTRATOR_LOG_DIR"]).glob("vllm-spare-*"))


def sockets():
    return sorted(spare.spare_dir().glob("*.sock"))


def gone(pid: int) -> bool:
    return spare.process_start_ticks(pid, alive_only=True) is None


def without_port(argv):
    i = argv.index("--port")
    return argv[:i] + argv[i + 2:]


def test_the_next_start_is_served_by_the_spare_the_first_left(fake):  # noqa: F811
    first = ServerEngine(cfg(), 8)
    first.start()
    launched = json.loads((fake / "argv.json").read_text())
    assert first._start_info[EXTRA_KEY]["from_spare"] is False and not isinstance(first._proc, spare.AdoptedProcess)
    first.stop()
    wait_for(lambda: len(sockets()) == 1, what="the spare's socket")
    spare_pid = int(sockets()[0].stem.rsplit("-", 1)[1])

    second = ServerEngine(cfg(), 8)
    claim_unix_s = time.time()
    second.start()
    served = json.loads((fake / "argv.json").read_text())
    assert second._start_info[EXTRA_KEY]["from_spare"] is True
    assert isinstance(second._proc, spare.AdoptedProcess) and served["pid"] == second._proc.pid == spare_pid
    assert served["imported_unix_s"] < claim_unix_s  # its imports were done before the start needed them
    assert served["package_modules"] == launched["package_modules"] == []  # it holds what vllm serve would
    # the same command line but for its own free port, its own key and log
    assert without_port(served["argv"]) == without_port(launched["argv"])
    assert served["argv"][served["argv"].index("--port") + 1] == str(second._port)
    assert served["api_key"] == second.api_key != launched["api_key"]
    assert served["core_start"] == launched["core_start"] == "fork" and served["cache"] == launched["cache"]
    assert "starting fake vllm serve" in Path(second._log_path).read_text()
    # it imported under SCHED_IDLE (root here) and serves at normal priority, every thread
    assert "imports done" in spare_logs()
    assert {os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{spare_pid}/task")} == {os.SCHED_OTHER}
    assert child_alive(fake)
    wait_for(lambda: len(sockets()) == 1, what="the spare the second start left")  # one waits again, not two
    assert int(sockets()[0].stem.rsplit("-", 1)[1]) != spare_pid
    assert not list(spare.spare_dir().glob("*.importing"))
    second.stop()
    assert not child_alive(fake) and second._stop_report["stop_signal"] == "SIGTERM"
    wait_for(lambda: gone(spare_pid), 30, "the claimed spare's exit")


@pytest.mark.parametrize("setting", ["engine.vllm.server_spare_idle_s=0", "engine.vllm.server_core_start=spawn"])
def test_no_spare_with_idle_0_or_a_spawned_core(fake, setting):  # noqa: F811
    """A spawned engine core re-imports its parent's ``__main__``, which a spare's differs from."""
    eng = ServerEngine(cfg(setting), 8)
    eng.start()
    eng.stop()
    assert spare_logs() == "" and sockets() == []  # leave_spare opens its log before the spare starts


def test_a_spare_that_dies_in_its_start_gives_way_to_a_new_launch(fake, monkeypatch, caplog):  # noqa: F811
    monkeypatch.setenv("FAKE_VLLM_MODE", "die_in_spare")
    first = ServerEngine(cfg(), 8)
    first.start()
    first.stop()
    wait_for(lambda: len(sockets()) == 1, what="the spare's socket")
    second = ServerEngine(cfg(), 8)
    with caplog.at_level("WARNING"):
        second.start()
    assert second._start_info[EXTRA_KEY]["from_spare"] is False and not isinstance(second._proc, spare.AdoptedProcess)
    assert "exited during its start" in caplog.text and "launching anew" in caplog.text
    died = [p for p in Path(os.environ["ORCHESTRATOR_LOG_DIR"]).glob("vllm-serve-*")
            if "dying in a spare" in p.read_text()]
    assert len(died) == 1 and died[0] != Path(second._log_path)
    second.stop()


def test_a_claimer_that_gives_up_before_its_go_leaves_nothing_running(fake, tmp_path):  # noqa: F811
    env = launch_env(fake)
    key, sock, pid = waiting_spare(env, tmp_path / "spare.log")
    claim = {"argv": ["serve"], "env": env, "log": str(tmp_path / "x.log"), "claimer_pid": os.getpid()}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(sock))
        s.sendall((json.dumps(claim) + "\n").encode())
        assert s.makefile("rb").readline().startswith(b"ok ")
    wait_for(lambda: gone(pid), 30, "the spare's exit")
    assert "gave up before its go" in (tmp_path / "spare.log").read_text()
    assert not (fake / "argv.json").exists()  # it never ran vllm serve


def launch_env(fake_state: Path) -> dict:
    return {**os.environ, "VLLM_API_KEY": "k-1", "PYTHONUNBUFFERED": "1", "FAKE_VLLM_STATE": str(fake_state)}


def waiting_spare(env: dict, log_path: Path, idle_s: float = 120.0):
    """Leave a spare for a launch with ``env`` and wait until it listens; -> (key, socket, pid)."""
    key = spare.spare_key(sys.executable, env, PER_START_KEYS)
    spare.leave_spare(key, sys.executable, {k: v for k, v in env.items() if k not in PER_START_KEYS}, idle_s, log_path)
    wait_for(lambda: len(sockets()) == 1, what="the spare's socket")
    (sock,) = sockets()
    return key, sock, int(sock.stem.rsplit("-", 1)[1])


def test_a_claimed_spare_dies_with_its_claimer(fake, tmp_path):  # noqa: F811
    """A cancelled task's worker is SIGKILLed: no ``stop()`` runs. The server it claimed, not its
    child, has its watcher kill its process group (the fake's "engine core" included), SIGKILL
    after SIGTERM: here the server and its child ignore SIGTERM."""
    env = {**launch_env(fake), "FAKE_VLLM_MODE": "ignore_term"}
    key, _, _ = waiting_spare(env, tmp_path / "spare.log")
    port = free_port()
    argv = ["serve", "/models/m", "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "m"]
    claimer = subprocess.Popen([sys.executable, "-c", (
        "import sys, json, time; from pathlib import Path; from orchestrator.engines.vllm import spare; "
        f"p = spare.claim_spare({key!r}, {argv!r}, json.loads(sys.argv[1]), Path({str(tmp_path / 'serve.log')!r})); "
        "print(p.pid if p else 0, flush=True); time.sleep(300)"), json.dumps(env)],
        stdout=subprocess.PIPE, text=True)
    try:
        pid = int(claimer.stdout.readline())
        assert pid > 0
        wait_for(lambda: (fake / "child.pid").exists() and child_alive(fake), what="the claimed server's child")
        time.sleep(1.0)  # the fake's handler for SIGTERM is in place before its child starts
        assert json.loads((fake / "argv.json").read_text())["pid"] == pid
    finally:
        claimer.kill()
        claimer.wait()
    wait_for(lambda: gone(pid) and not child_alive(fake), 30, "the spare's group after its claimer's death")
    assert "is gone: stopping this server" in (tmp_path / "serve.log").read_text()


def test_an_unclaimed_spare_exits_after_its_idle_time(fake, tmp_path):  # noqa: F811
    env = launch_env(fake)
    key = spare.spare_key(sys.executable, env, PER_START_KEYS)
    spare.leave_spare(key, sys.executable, env, 1.0, tmp_path / "spare.log")
    assert spare.claim_spare("0" * 12, ["serve"], env, tmp_path / "x.log") is None  # another key: not this one
    wait_for(lambda: "not claimed in 1 s: exiting" in (tmp_path / "spare.log").read_text(), what="the idle exit")
    wait_for(lambda: sockets() == [], 10, "its socket removed")
    assert spare.claim_spare(key, ["serve"], env, tmp_path / "x.log") is None


def test_a_dead_spares_socket_is_removed_by_the_next_claim(fake, tmp_path):  # noqa: F811
    env = launch_env(fake)
    key, sock, pid = waiting_spare(env, tmp_path / "spare.log")
    os.killpg(pid, signal.SIGKILL)  # no chance to remove its socket
    wait_for(lambda: gone(pid), 10, "the spare's death")
    assert spare.claim_spare(key, ["serve"], env, tmp_path / "x.log") is None and not sock.exists()


def test_what_a_spare_may_serve(monkeypatch, tmp_path):
    """The key follows the interpreter, every variable a launch's imports could read, the spare's
    own code and the installed vLLM and torch; not the per-start variables (the API key, the step
    log) nor Ray's own (a worker's ids and ports)."""
    env = {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0", "VLLM_API_KEY": "a", "RAY_NODE_ID": "n1"}
    key = spare.spare_key("/py", env, PER_START_KEYS)
    assert spare.spare_key("/py", {**env, "VLLM_API_KEY": "b", "RAY_NODE_ID": "n2", "RAY_X": "1"}, PER_START_KEYS) == key
    assert spare.spare_key("/py", {**env, PER_START_KEYS[1]: "/tmp/steps"}, PER_START_KEYS) == key
    assert spare.spare_key("/py", {**env, "CUDA_VISIBLE_DEVICES": "1"}, PER_START_KEYS) != key
    assert spare.spare_key("/py", {**env, "VLLM_LOGGING_LEVEL": "DEBUG"}, PER_START_KEYS) != key
    assert spare.spare_key("/other/python", env, PER_START_KEYS) != key
    assert len(key) == 12
    monkeypatch.setattr(spare, "_version", lambda d: "0.0.1" if d == "vllm" else "")  # vLLM reinstalled
    assert spare.spare_key("/py", env, PER_START_KEYS) != key
    monkeypatch.undo()
    edited = tmp_path / "spare_main.py"
    edited.write_text(spare.SPARE_MAIN.read_text() + "\n# edited\n")
    monkeypatch.setattr(spare, "SPARE_MAIN", edited)
    assert spare.spare_key("/py", env, PER_START_KEYS) != key


def test_a_spare_directory_others_may_enter_is_not_used(fake, tmp_path):  # noqa: F811
    """A claim sends the start's environment, its API key included: only to a directory that is
    this user's alone."""
    env = launch_env(fake)
    key = spare.spare_key(sys.executable, env, PER_START_KEYS)
    spare.spare_dir().chmod(0o755)
    spare.leave_spare(key, sys.executable, env, 120.0, tmp_path / "spare.log")
    time.sleep(2.0)
    assert sockets() == [] and not (tmp_path / "spare.log").exists()
    assert spare.claim_spare(key, ["serve"], env, tmp_path / "x.log") is None
