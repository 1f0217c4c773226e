"""Each part runs in its own process (own session, so a time limit kills vLLM's children too);
its ``[bench]`` lines are echoed while it runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

from benchvllm.common import ROOT, SCRIPT, log

ECHOED = ("[bench]", "sweep ", "dispatched ", "engine=auto")  # line prefixes shown from a part's log


def child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(ROOT)) if p)
    env.update(PYTHONUNBUFFERED="1", RAY_DEDUP_LOGS="0", HF_HUB_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)
    return env


def worker_cmd(args, worker: str) -> List[str]:
    """This script again, as the ``bare`` or ``server`` worker, with the driver's options."""
    keep = ("--out", args.out, "--work", args.work, "--gpu", args.gpu, "--model", args.model,
            "--batch-sizes", args.batch_sizes, "--max-num-batched-tokens", str(args.max_num_batched_tokens),
            "--server-batch-size", str(args.server_batch_size), "--chat-duration-s", str(args.chat_duration_s),
            "--sampler-batch-size", str(args.sampler_batch_size), "--sampler-trials", str(args.sampler_trials),
            "--sampler-batches", str(args.sampler_batches), "--energy-window-s", str(args.energy_window_s),
            "--energy-batch-size", str(args.energy_batch_size),
            "--energy-trace-interval-s", str(args.energy_trace_interval_s), "--repeats", str(args.repeats))
    return [sys.executable, str(SCRIPT), *keep, "--worker", worker]


def run_part(name: str, args, work: Path, budget_s: float) -> Dict:
    """Run the worker of part ``name`` in its own process; -> its process record merged with
    the ``<name>.json`` it wrote (if any)."""
    import json

    path = work / f"{name}.json"
    path.unlink(missing_ok=True)
    res = run_child(name, worker_cmd(args, name), budget_s, work)
    if path.exists():
        res.update(json.loads(path.read_text()))
    return res


def run_child(name: str, cmd: List[str], timeout_s: float, work: Path) -> Dict:
    """Run a part's process (own session), echoing its ``[bench]`` lines; kill it at timeout."""
    path = work / f"{name}.log"
    log(f"{name}: start (limit {timeout_s:.0f} s) log {path}")
    t0 = time.monotonic()
    with open(path, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        rc = _follow(proc, path, t0 + timeout_s)
    wall = time.monotonic() - t0
    out = {"rc": rc, "wall_s": wall, "log": str(path)}
    if rc != 0:
        out["log_tail"] = path.read_text(errors="replace")[-4000:]
    log(f"{name}: done rc={rc} in {wall:.0f} s")
    return out


def _follow(proc: subprocess.Popen, path: Path, deadline: float):
    """Echo the log's new lines every second until the process ends (-> its exit code) or the
    deadline passes (-> ``"timeout"``, its process group killed)."""
    offset = 0
    while True:
        try:
            rc = proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            rc = None
        offset = _echo_new_lines(path, offset)
        if rc is not None:
            return rc
        if time.monotonic() > deadline:
            _kill_group(proc)
            return "timeout"


def _echo_new_lines(path: Path, offset: int) -> int:
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    for line in chunk.decode(errors="replace").splitlines():
        if line.startswith(ECHOED):
            print("   " + line, flush=True)
    return offset + len(chunk)


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL if it is still there after 20 s."""
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
