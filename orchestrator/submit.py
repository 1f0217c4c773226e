"""Submit a sweep to a Ray cluster through the Ray Jobs API, follow its logs, fetch its results.

    python -m orchestrator.submit [--address http://127.0.0.1:8265] [--results DIR] [--no-fetch]
                                  -- +sweep=full gpu=h100 ...

The job runs ``python -m orchestrator <overrides>`` on the head with this directory as its
working dir (Hydra multirun overrides work the same as locally). Results are written by the
job's driver to ``--cluster-store`` on the head (default ``~/orchestrator-results/<name>``), so a
re-submission of the same sweep resumes it. Unless ``--no-fetch``, the job then packs that
directory into its log (base64 tar.gz between markers), and this command unpacks it into
``--results`` (default ``outputs/``). For large sweeps use ``store.uri=s3://...`` instead.

Ray's job API has no authentication: keep the dashboard on 127.0.0.1 (the default of
``scripts/cluster_head.sh``) or behind an authenticated tunnel, never on an untrusted network.
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import shlex
import sys
import tarfile
import time
from pathlib import Path
from typing import List, Optional

BEGIN, END = "=====ORCHESTRATOR-RESULTS-BEGIN=====", "=====ORCHESTRATOR-RESULTS-END====="
DEFAULT_STORE = "${oc.env:HOME}/orchestrator-results/${name}"
EXCLUDES = ["outputs/", ".git/", ".gpu/", ".whl/", "**/__pycache__/", "*.egg-info/"]


def pack(directory: str) -> None:
    """Print ``directory`` as a base64 tar.gz between markers (runs inside the job)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(directory, arcname=os.path.basename(os.path.normpath(directory)))
    data = base64.b64encode(buf.getvalue()).decode()
    print(BEGIN)
    for i in range(0, len(data), 76):
        print(data[i : i + 76])
    print(END, flush=True)


def unpack(logs: str, dest: Path) -> Optional[Path]:
    """Extract the packed results found in job logs into ``dest``; -> the extracted folder."""
    if BEGIN not in logs:
        return None
    body = logs.split(BEGIN, 1)[1].split(END, 1)[0]
    data = base64.b64decode("".join(body.split()))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        tar.extractall(dest, filter="data")
    return dest / names[0].split("/")[0] if names else dest


def entrypoint(overrides: List[str], store: str, fetch: bool) -> str:
    args = list(overrides)
    if not any(a.startswith(("store.dir=", "store.uri=")) for a in args):
        args.append(f"store.dir={store}")
    flag = "--job-and-pack" if fetch else "--job"
    return f"python -m orchestrator.submit {flag} " + " ".join(shlex.quote(a) for a in args)


def run_job(overrides: List[str], fetch: bool) -> int:
    """The job's entry point: run the sweep as a child driver, then pack its store.

    Ray removes a job's working dir once a driver inside it exits, so the store directory is
    resolved (to an absolute path) before the sweep runs, and packing uses only that path."""
    import subprocess

    store = store_dir(overrides) if fetch else None
    rc = subprocess.call([sys.executable, "-m", "orchestrator", *overrides])
    if rc == 0 and store is not None:
        pack(store)
    return rc


def store_dir(overrides: List[str]) -> str:
    """The resolved store directory of these overrides (runs inside the job)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from orchestrator.config import register_configs
    from orchestrator.grid import CONF_DIR

    register_configs()
    plain_args = [a for a in overrides if "," not in a.split("=", 1)[-1] and not a.startswith("-")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=plain_args)
    return os.path.abspath(OmegaConf.select(cfg, "store.dir"))


def follow(client, job_id: str, poll_s: float = 1.0) -> str:
    """Print the job's new log lines (not the packed results) until it ends; -> final status."""
    from ray.job_submission import JobStatus

    shown, hiding = 0, False
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        for line in logs[shown:].splitlines(keepends=True):
            if line.startswith(BEGIN):
                hiding = True
            if not hiding:
                sys.stdout.write(line)
            if line.startswith(END):
                hiding = False
        sys.stdout.flush()
        shown = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            return str(status)
        time.sleep(poll_s)


def submit(address: str, overrides: List[str], results: Path, fetch: bool, store: str,
           working_dir: str = ".") -> int:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    job_id = client.submit_job(
        entrypoint=entrypoint(overrides, store, fetch),
        runtime_env={"working_dir": working_dir, "excludes": EXCLUDES},
    )
    print(f"submitted job {job_id} to {address}", flush=True)
    status = follow(client, job_id)
    print(f"job {job_id}: {status}", flush=True)
    if fetch:
        where = unpack(client.get_job_logs(job_id), results)
        print(f"results: {where}" if where else "no results were packed (see the log)", flush=True)
    return 0 if status.endswith("SUCCEEDED") else 1


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--job"], ["--job-and-pack"]):
        return run_job(argv[1:], fetch=argv[0] == "--job-and-pack")
    if "--" in argv:
        i = argv.index("--")
        own, overrides = argv[:i], argv[i + 1 :]
    else:
        own, overrides = argv, []
    ap = argparse.ArgumentParser(prog="python -m orchestrator.submit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--address", default=os.environ.get("RAY_DASHBOARD_ADDRESS", "http://127.0.0.1:8265"),
                    help="the Ray dashboard / job API (default http://127.0.0.1:8265)")
    ap.add_argument("--results", type=Path, default=Path("outputs"), help="where fetched results go")
    ap.add_argument("--cluster-store", default=DEFAULT_STORE, help="store.dir on the head (Hydra interpolations allowed)")
    ap.add_argument("--no-fetch", action="store_true", help="leave the results on the cluster")
    ap.add_argument("--working-dir", default=".")
    a = ap.parse_args(own)
    from orchestrator.cli import check_argv

    check_argv(overrides)  # bad input fails here, before anything is submitted
    return submit(a.address, overrides, a.results, not a.no_fetch, a.cluster_store, a.working_dir)


if __name__ == "__main__":
    sys.exit(main())
