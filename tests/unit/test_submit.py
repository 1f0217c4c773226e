"""``orchestrator.submit``'s job-log handling and the command line's ``-m`` anywhere (pure parts)."""
from __future__ import annotations

import io
import tarfile
from contextlib import redirect_stdout

import pytest

from orchestrator import submit
from orchestrator.app.argv import hoist_multirun


def _packed_log(tmp_path, payload_files=3):
    src = tmp_path / "mysweep"
    (src / "runs").mkdir(parents=True)
    for i in range(payload_files):
        (src / "runs" / f"c{i}.parquet").write_bytes(bytes(range(256)) * (i + 1))
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert submit.pack(str(src))
    return "sweep: 3 cells\nsweep done: 3 ok\n" + buf.getvalue() + "after the results\n", src


def _feed(log: str, cuts, out):
    f = submit.LogFollower(out=out)
    last = 0
    for c in list(cuts) + [len(log)]:
        f.feed(log[last:c])
        last = c
    f.close()
    return f


@pytest.mark.parametrize("step", [1, 7, 76, 77, 1000])
def test_log_follower_decodes_however_the_log_is_cut(tmp_path, step):
    log, src = _packed_log(tmp_path)
    out = io.StringIO()
    f = _feed(log, range(step, len(log), step), out)  # every chunk boundary, markers split included
    assert f.complete
    assert out.getvalue() == "sweep: 3 cells\nsweep done: 3 ok\nafter the results\n"  # no payload shown
    got = f.extract(tmp_path / "fetched")
    assert got.name == "mysweep"
    for p in (src / "runs").iterdir():
        assert (got / "runs" / p.name).read_bytes() == p.read_bytes()


def test_log_follower_cut_inside_each_marker(tmp_path):
    log, _ = _packed_log(tmp_path)
    for marker in (submit.BEGIN, submit.END):
        i = log.index(marker)
        for k in range(1, len(marker)):
            f = _feed(log, [i + k], io.StringIO())
            assert f.complete, (marker, k)


def test_log_without_results_extracts_nothing(tmp_path):
    f = _feed("sweep done: 0 ok\n", [5], io.StringIO())
    assert not f.complete and f.extract(tmp_path / "x") is None


def test_pack_over_the_limit_is_refused_with_a_pointer_to_store_uri(tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    import os

    (src / "blob.bin").write_bytes(os.urandom(3 * 2**20))  # incompressible
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert not submit.pack(str(src), max_mib=1.0)
    text = buf.getvalue()
    assert submit.BEGIN not in text and "store.uri=" in text and str(src) in text
    assert len(text.strip().splitlines()) == 1


def test_entrypoint_with_store_uri_packs_nothing():
    cmd = submit.entrypoint(["+sweep=smoke", "store.uri=s3://bucket/x"], "~/r", fetch=True)
    assert "--job " in cmd and "--job-and-pack" not in cmd
    cmd = submit.entrypoint(["+sweep=smoke"], "/home/u/r", fetch=True, max_pack_mib=50)
    assert "--job-and-pack 50 " in cmd and "store.dir=/home/u/r" in cmd
    assert submit.store_uri(["a=1", "store.uri=gs://b/p"]) == "gs://b/p"
    assert submit.store_uri(["store.dir=x"]) is None


def test_tarball_member_paths_stay_inside(tmp_path):
    """extract uses tarfile's data filter: a member escaping the folder is refused."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    f = submit.LogFollower(out=io.StringIO())
    f.payload, f.complete = io.BytesIO(buf.getvalue()), True
    with pytest.raises(tarfile.FilterError):
        f.extract(tmp_path / "d")
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("argv, want", [
    (["engine=vllm", "-m", "batch_size=1,8"], ["-m", "engine=vllm", "batch_size=1,8"]),
    (["-m", "batch_size=1,8"], ["-m", "batch_size=1,8"]),
    (["batch_size=1", "--multirun"], ["--multirun", "batch_size=1"]),
    (["batch_size=1"], ["batch_size=1"]),
])
def test_multirun_flag_moves_first(argv, want):
    assert hoist_multirun(argv) == want
