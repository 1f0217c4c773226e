"""Shared fixtures: the real config (Hydra compose), a sweep runner, Ray node helpers."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
# Ray's token authentication, explicitly on for every node and driver the tests start (a token is
# generated in ~/.ray/auth_token by the first head if none exists).
os.environ["RAY_AUTH_MODE"] = "token"


@pytest.fixture(scope="session")
def compose():
    """compose(overrides) -> DictConfig of the real config, as Hydra builds it (the typed root
    ``Config``: ``orchestrator.app.hydra_entry.typed(compose(...))``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from orchestrator.app.hydra_entry import register_configs

    register_configs()

    def _compose(overrides=(), return_hydra_config=False):
        # Hydra's global state is set up per call: other code (scripts under test) may clear it.
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=list(overrides),
                                 return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


def node_env(extra=None):
    """Environment of a Ray node started by a test: like ``scripts/cluster_head.sh``, the test's
    interpreter's directory first on PATH, so jobs' ``python`` is this interpreter even when its
    virtual environment is not activated."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "PATH": path, "RAY_DEDUP_LOGS": "0", **(extra or {})}


def _orchestrator_env(env=None):
    full_env = {**os.environ, "RAY_DEDUP_LOGS": "0", **(env or {})}
    full_env.pop("RAY_ADDRESS", None)  # its own local Ray cluster
    return full_env


def run_orchestrator(args, timeout=300, env=None, check=True):
    """``python -m orchestrator *args`` in the repo root; returns CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=_orchestrator_env(env),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"orchestrator {args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def start_orchestrator(args, env=None) -> subprocess.Popen:
    """``python -m orchestrator *args`` started in the repo root in a session of its own (a test
    signals it), its output piped."""
    return subprocess.Popen([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=_orchestrator_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def interrupt_once_stored(proc: subprocess.Popen, store: Path, rows_before: int = 0, timeout_s: float = 150):
    """Ctrl-C ``proc`` once ``store`` holds more than ``rows_before`` cells' rows (a second one a
    second later if it still runs, as a user would press it); -> (stdout, stderr) once it exited."""
    deadline = time.time() + timeout_s
    while not (store / "runs").is_dir() or len(list((store / "runs").glob("*.parquet"))) <= rows_before:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    if proc.poll() is None:  # the first landed in a C call
        proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayNodes:
    """Ray nodes on 127.0.0.1 started with ``ray start --block`` in their own sessions, so the
    test can stop exactly its own processes (never ``ray stop``, which kills every cluster)."""

    def __init__(self):
        self.procs = []
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"

    def _start(self, extra, env=None, timeout=120):
        """Start one node and wait until it says it runs (nodes started at once race for their
        socket names); each node gets its own dashboard-agent port."""
        import tempfile

        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
               "--node-ip-address=127.0.0.1", f"--dashboard-agent-listen-port={free_port()}", *extra]
        log = tempfile.NamedTemporaryFile("w+", prefix="raynode-", suffix=".log", delete=False)
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=node_env(env))
        self.procs.append(proc)
        deadline = time.time() + timeout
        while "Ray runtime started" not in Path(log.name).read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start failed: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.3)
        return proc

    @staticmethod
    def ensure_token():
        """A fresh machine has no ~/.ray/auth_token: ``ray start --head`` needs one (ray.init makes
        its own for a local cluster, ray start does not)."""
        if os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").is_file():
            return
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"],
                       capture_output=True, check=True, timeout=60)

    def head(self, num_cpus=1, num_gpus=0, resources=None, dashboard=False, env=None):
        self.ensure_token()
        extra = ["--head", f"--port={self.port}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"]
        if dashboard:
            self.dashboard_port = free_port()
            extra += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}"]
        else:
            extra += ["--include-dashboard=false"]
        if resources:
            extra.append(f"--resources={resources}")
        return self._start(extra, env)

    def worker(self, num_cpus=1, num_gpus=0, resources=None, env=None):
        extra = [f"--address={self.address}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}"]
        if resources:
            extra.append(f"--resources={resources}")
        return self._start(extra, env)

    def wait_nodes(self, n, timeout=90):
        import ray

        deadline = time.time() + timeout
        ray.init(address=self.address, logging_level="ERROR")
        try:
            while time.time() < deadline:
                alive = [x for x in ray.nodes() if x["Alive"]]
                if len(alive) >= n:
                    return alive
                time.sleep(1)
            raise TimeoutError(f"only {len(alive)} of {n} Ray nodes came up")
        finally:
            ray.shutdown()

    @staticmethod
    def kill(proc, sig=signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        for p in self.procs:
            self.kill(p, signal.SIGTERM)
        time.sleep(2)
        for p in self.procs:
            self.kill(p, signal.SIGKILL)
            p.wait(timeout=30)


@pytest.fixture
def endpoint_key(monkeypatch):
    """The test API key in the environment variable the ``engine=endpoint`` cells name
    (``tests/integration/endpoint_servers``)."""
    from tests.integration.endpoint_servers import KEY, KEY_ENV

    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


@pytest.fixture
def ray_nodes():
    nodes = RayNodes()
    yield nodes
    nodes.stop()


def autospec_pynvml():
    """pynvml autospec'd (``create_autospec`` of the real module) with its real ``NVML_*``
    constants and ``NVMLError``: the one fake the suite allows (NVML's paths need a GPU)."""
    from unittest.mock import create_autospec

    import pynvml

    m = create_autospec(pynvml)
    m.NVMLError = pynvml.NVMLError
    for name in dir(pynvml):
        if name.startswith("NVML_"):
            setattr(m, name, getattr(pynvml, name))
    return m
