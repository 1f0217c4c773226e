"""scripts/gpu_session.sh: a run started in its own session outlives the starting shell, is
watched, and ends on `stop` by SIGINT to its process group (a child included), its log and the
stores packed into $OUT. nvidia-smi is absent here: the script reports it and goes on."""
from __future__ import annotations

import os
import subprocess
import tarfile
import time

from tests.conftest import ROOT

CHILD = ("import signal, subprocess, sys, time; "
         "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
         "open(sys.argv[1], 'w').write(str(c.pid)); print('running', flush=True); time.sleep(120)")


def _session(tmp_path, *args):
    env = {**os.environ, "GPU_SESSION_ROOT": str(tmp_path / "root"), "OUT": str(tmp_path / "out")}
    return subprocess.run(["bash", "scripts/gpu_session.sh", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
        return f.read().split(")")[-1].split()[0] != "Z"


def test_start_watch_stop(tmp_path):
    (tmp_path / "root").mkdir(), (tmp_path / "out").mkdir()
    store = tmp_path / "store"
    store.mkdir()
    (store / "marker").write_text("x")
    child_pid = tmp_path / "child.pid"
    started = _session(tmp_path, "start", "t", "--", "python", "-c", CHILD, child_pid)
    assert started.returncode == 0 and "t started" in started.stdout, started.stderr
    again = _session(tmp_path, "start", "t", "--", "true")
    assert again.returncode == 2 and "t already runs" in again.stderr
    main_pid = int((tmp_path / "root" / "t.pid").read_text())
    for _ in range(100):
        if child_pid.exists() and child_pid.read_text():
            break
        time.sleep(0.1)
    watched = _session(tmp_path, "watch", "t", 1)
    assert "t still runs" in watched.stdout and "running" in watched.stdout
    assert _alive(main_pid) and _alive(int(child_pid.read_text()))
    stopped = _session(tmp_path, "stop", "t", store)
    assert "t exited" in stopped.stdout and "KeyboardInterrupt" in stopped.stdout, stopped.stdout
    assert not _alive(main_pid) and not _alive(int(child_pid.read_text()))
    with tarfile.open(tmp_path / "out" / "t.tgz") as tar:
        assert {"t.log", "store/marker"} <= set(tar.getnames())
    assert (tmp_path / "root" / "tree" / "scripts" / "gpu_session.sh").is_file()


def test_keep_packs_as_it_goes_until_the_run_ends(tmp_path):
    """`keep` (an allowance's last call, cut by its time limit) packs the stores every few seconds:
    a pack exists while the run still runs, and a last one after it ends; no part file is left."""
    (tmp_path / "root").mkdir(), (tmp_path / "out").mkdir()
    store = tmp_path / "store"
    store.mkdir()
    (store / "marker").write_text("x")
    # the run writes its log all along: tar sees it change while it reads (exit 1) and the pack still counts
    talk = "import time\nfor i in range(400): print('line', i, 'x' * 2000, flush=True); time.sleep(0.01)"
    started = _session(tmp_path, "start", "k", "--", "python", "-c", talk)
    assert started.returncode == 0, started.stderr
    kept = _session(tmp_path, "keep", "k", 1, store)
    assert kept.returncode == 0 and kept.stdout.count("packed at") >= 2 and "k has ended" in kept.stdout, kept.stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["k.tgz"] and "pack failed" not in kept.stderr
    assert _session(tmp_path, "keep", "k", 0).returncode == 2
    with tarfile.open(tmp_path / "out" / "k.tgz") as tar:
        assert {"k.log", "store/marker"} <= set(tar.getnames())
