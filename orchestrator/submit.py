"""Submit a sweep to a Ray cluster through the Ray Jobs API, follow its logs, fetch its results.

    python -m orchestrator.submit [--address http://127.0.0.1:8265] [--results DIR] [--no-fetch]
                                  -- +sweep=full gpu=h100 ...

The job runs ``python -m orchestrator <overrides>`` on the head with this directory as its
working dir (Hydra multirun overrides work the same as locally). Results are written by the
job's driver to ``--cluster-store`` on the head (default ``~/orchestrator-results/<name>``), so a
re-submission of the same sweep resumes it. Unless ``--no-fetch``, the job then packs that
directory into its log (base64 tar.gz between markers), and this command unpacks it into
``--results`` (default ``outputs/``). The log is followed as it grows (only new bytes), and the
packed results are decoded as they arrive. A pack larger than ``--max-pack-mib`` (default 200)
is not sent: the job says where the results stay on the head, and that ``store.uri=s3://...``
(any pyarrow filesystem) writes them where you can read them. With ``store.uri`` nothing is
packed or fetched: the job writes there directly.

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
from pathlib import Path
from typing import List, Optional

from orchestrator.app.argv import check_argv, fail
from orchestrator.app.hydra_entry import register_configs
from orchestrator.driver.overrides import CONF_DIR
from orchestrator.errors import ConfigError

BEGIN, END = "=====ORCHESTRATOR-RESULTS-BEGIN=====", "=====ORCHESTRATOR-RESULTS-END====="
MAX_PACK_MIB = 200.0
DEFAULT_STORE = "${oc.env:HOME}/orchestrator-results/${name}"
EXCLUDES = ["outputs/", ".git/", ".gpu/", ".whl/", "**/__pycache__/", "*.egg-info/"]


def pack(directory: str, max_mib: float = MAX_PACK_MIB) -> bool:
    """Print ``directory`` as a base64 tar.gz between markers (runs inside the job); a pack over
    ``max_mib`` is not printed (one line says why and where the results stay). -> printed?"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(directory, arcname=os.path.basename(os.path.normpath(directory)))
    size_mib = buf.tell() / 2**20
    if size_mib > max_mib:
        print(f"results not fetched: {size_mib:.0f} MiB packed is more than the {max_mib:.0f} MiB the job log "
              f"carries (--max-pack-mib); they stay on the head in {directory}; use store.uri=s3://... (any "
              "pyarrow filesystem) to write them where you can read them", flush=True)
        return False
    data = base64.b64encode(buf.getvalue()).decode()
    print(BEGIN)
    for i in range(0, len(data), 76):
        print(data[i : i + 76])
    print(END, flush=True)
    return True


class LogFollower:
    """Consumes a job log chunk by chunk (chunks may split lines, markers included): the log's
    lines go to ``out``, the packed results between the markers are base64-decoded as they come
    (one copy, the compressed bytes)."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.payload: Optional[io.BytesIO] = None
        self.complete = False
        self._partial = ""
        self._b64 = ""

    def feed(self, chunk: str) -> None:
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()  # an unfinished line waits for the next chunk
        for line in lines:
            self._line(line)

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""

    def _line(self, line: str) -> None:
        text = line.rstrip("\r")
        if text.startswith(BEGIN):
            self.payload, self._b64 = io.BytesIO(), ""
        elif text.startswith(END) and self.payload is not None:
            self.payload.write(base64.b64decode(self._b64))
            self._b64, self.complete = "", True
        elif self.payload is not None and not self.complete:
            self._b64 += text.strip()
            cut = len(self._b64) // 4 * 4
            self.payload.write(base64.b64decode(self._b64[:cut]))
            self._b64 = self._b64[cut:]
        else:
            self.out.write(line + "\n")
            self.out.flush()

    def extract(self, dest: Path) -> Optional[Path]:
        """Unpack the results into ``dest``; -> the extracted folder (None if none came)."""
        if not self.complete or self.payload is None:  # (complete: a payload came)
            return None
        self.payload.seek(0)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=self.payload, mode="r:gz") as tar:
            names = tar.getnames()
            tar.extractall(dest, filter="data")
        return dest / names[0].split("/")[0] if names else dest


def entrypoint(overrides: List[str], store: str, fetch: bool, max_pack_mib: float = MAX_PACK_MIB) -> str:
    """The job's command: ``--job`` (results stay where the store is: on the head, or at
    ``store.uri``) or ``--job-and-pack <MiB>`` (then packed into the log)."""
    args = list(overrides)
    if not any(a.startswith(("store.dir=", "store.uri=")) for a in args):
        args.append(f"store.dir={store}")
    flag = f"--job-and-pack {max_pack_mib:g}" if fetch and not store_uri(args) else "--job"
    return f"python -m orchestrator.submit {flag} " + " ".join(shlex.quote(a) for a in args)


def run_job(overrides: List[str], fetch: bool, max_pack_mib: float = MAX_PACK_MIB) -> int:
    """The job's entry point: run the sweep as a child driver, then pack its store.

    Ray removes a job's working dir once a driver inside it exits, so the store directory is
    resolved (to an absolute path) before the sweep runs, and packing uses only that path."""
    import subprocess

    store = store_dir(overrides) if fetch else None
    rc = subprocess.call([sys.executable, "-m", "orchestrator", *overrides])
    if rc == 0 and store is not None:
        pack(store, max_pack_mib)
    return rc


def store_dir(overrides: List[str]) -> str:
    """The resolved store directory of these overrides (runs inside the job)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    register_configs()
    plain_args = [a for a in overrides if "," not in a.split("=", 1)[-1] and not a.startswith("-")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=plain_args)
    return os.path.abspath(OmegaConf.select(cfg, "store.dir"))


def follow(client, job_id: str, follower: LogFollower) -> str:
    """Feed the job's log to ``follower`` as it grows (Ray streams only new bytes) until the job
    ends; -> its final status."""
    import asyncio

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            follower.feed(chunk)

    asyncio.run(tail())
    follower.close()
    return str(client.get_job_status(job_id))


def submit(address: str, overrides: List[str], results: Path, fetch: bool, store: str,
           working_dir: str = ".", max_pack_mib: float = MAX_PACK_MIB) -> int:
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except ConnectionError as exc:  # no cluster there: one line, exit 2, nothing submitted
        fail(ConfigError(f"--address {address}: no Ray cluster answers there ({str(exc).splitlines()[0]}); start "
                         "one (scripts/cluster_head.sh) or pass its dashboard address"))
    job_id = client.submit_job(
        entrypoint=entrypoint(overrides, store, fetch, max_pack_mib),
        runtime_env={"working_dir": working_dir, "excludes": EXCLUDES},
    )
    print(f"submitted job {job_id} to {address}", flush=True)
    follower = LogFollower()
    status = follow(client, job_id, follower)
    print(f"job {job_id}: {status}", flush=True)
    uri = store_uri(overrides)
    if uri:
        print(f"results: {uri} (written there by the job; nothing to fetch)", flush=True)
    elif fetch:
        where = follower.extract(results)
        print(f"results: {where}" if where else "no results were fetched (see the log above)", flush=True)
    return 0 if status.endswith("SUCCEEDED") else 1


def store_uri(overrides: List[str]) -> Optional[str]:
    """The ``store.uri=`` of the overrides, if any."""
    return next((a.split("=", 1)[1] for a in overrides if a.startswith("store.uri=")), None)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--job"]:
        return run_job(argv[1:], fetch=False)
    if argv[:1] == ["--job-and-pack"]:
        return run_job(argv[2:], fetch=True, max_pack_mib=float(argv[1]))
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
    ap.add_argument("--max-pack-mib", type=float, default=MAX_PACK_MIB,
                    help="largest packed results fetched through the job log (else use store.uri)")
    a = ap.parse_args(own)
    check_argv(overrides)  # bad input fails here, before anything is submitted
    return submit(a.address, overrides, a.results, not a.no_fetch, a.cluster_store, a.working_dir, a.max_pack_mib)


if __name__ == "__main__":
    sys.exit(main())
