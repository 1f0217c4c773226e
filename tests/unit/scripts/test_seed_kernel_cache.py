"""``scripts/seed_kernel_cache.sh``: another machine's compile_cache_dir, packed as its README says,
lands in this one's (kept beside what is there); without a .tgz it says so and exits non-zero."""
from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_packed_cache_folder_lands_in_the_target(tmp_path):
    src = tmp_path / "other"
    (src / "flashinfer" / ".cache" / "flashinfer" / "0.6.14" / "90a").mkdir(parents=True)
    (src / "flashinfer" / ".cache" / "flashinfer" / "0.6.14" / "90a" / "sampling.so").write_bytes(b"\x7fELF")
    (src / "triton" / "ABC").mkdir(parents=True)
    (src / "triton" / "ABC" / "k.cubin").write_bytes(b"cubin")
    tgz = tmp_path / "kernel_cache.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(src, arcname=".")
    target = tmp_path / "mine"
    (target / "torch_compile_cache").mkdir(parents=True)  # this machine's own stays
    out = subprocess.run(["bash", "scripts/seed_kernel_cache.sh", str(tgz), str(target)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert (target / "flashinfer" / ".cache" / "flashinfer" / "0.6.14" / "90a" / "sampling.so").read_bytes() == b"\x7fELF"
    assert (target / "triton" / "ABC" / "k.cubin").read_bytes() == b"cubin"
    assert (target / "torch_compile_cache").is_dir()
    assert f"kernel caches from {tgz} in {target}" in out


def test_without_a_tgz_it_exits_non_zero_with_one_line():
    proc = subprocess.run(["bash", "scripts/seed_kernel_cache.sh"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].endswith("a .tgz of a compile_cache_dir")
