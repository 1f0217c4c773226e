"""Every ``python -m orchestrator`` command the README shows runs: for real where it needs no GPU
(``engine=auto`` resolves to the simulator here; results go to a temporary ``store.dir``); where
it asks for vLLM, NVML, a 7B hf model or a server of the user's (``engine=endpoint``), with ``--cfg job`` (compose and print, run nothing) or,
for a multirun (Hydra refuses ``--cfg`` with ``-m``), the same grid with ``engine=simulated
sampler=none``; the bad-input examples print exactly the error line the README shows, with exit
code 2."""
from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import ROOT, run_orchestrator

COMMAND = re.compile(r"^(\$ )?(?:pip install -e \. && )?python -m orchestrator(?=\s|$)(.*)$")
NEEDS_GPU = ("engine=vllm", "sampler=nvml", "engine=endpoint")
ACTIVE, CHECK = "sweep.strategy=active", "sweep.strategy=check"


def readme_commands():
    """(README line number, args, expected error line or None) of each command in a code block."""
    lines = (ROOT / "README.md").read_text().splitlines()
    out, in_code = [], False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
            continue
        m = COMMAND.match(line) if in_code else None
        if m:
            args = shlex.split(m.group(2).split("  #")[0].split(" # ")[0])
            expected = lines[i + 1].strip() if m.group(1) else None
            out.append(pytest.param(args, expected, id=f"README:{i + 1}"))
    return out


def needs_gpu(args) -> bool:
    hf_big = "engine=hf" in " ".join(args) and "model=tiny" not in args
    return any(a.startswith(NEEDS_GPU) for a in args) or hf_big


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 15


def _store_name(args) -> str:
    """The sweep name (so the store, outputs/<name>) a README command writes to."""
    names = [a.split("=", 1)[1] for a in args if a.startswith("name=")]
    sweeps = [a.split("=", 1)[1] for a in args if a.startswith(("+sweep=", "+search="))]
    return (names or sweeps or ["default"])[-1]


def test_each_readme_example_writes_its_own_store():
    """Two examples with different settings never write into one outputs/<name>: a user who runs
    them one after the other gets one setup per store (only --plan, --cfg and bad input write nothing)."""
    writers: dict[str, list] = {}
    checks = []
    for param in readme_commands():
        args, expected = param.values
        if expected is None and "--plan" not in args and "--cfg" not in args:
            if CHECK in args:  # reads and adds to the store of the active sweep it checks, by design
                checks.append(args)
                continue
            writers.setdefault(_store_name(args), []).append(args)
    shared = {name: runs for name, runs in writers.items() if len(runs) > 1}
    assert not shared, shared
    for args in checks:  # ... which the README shows too
        assert any(ACTIVE in runs[0] for name, runs in writers.items() if name == _store_name(args)), args


@pytest.mark.parametrize("args, expected", readme_commands())
def test_readme_command_runs(tmp_path, args, expected):
    if expected is not None:  # a bad-input example: "$ python -m orchestrator ..." then its error
        proc = run_orchestrator(args, check=False, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip() == expected
        return
    multirun = "-m" in args or "--multirun" in args
    if "--cfg" in args or (needs_gpu(args) and not multirun):
        extra = [] if "--cfg" in args else ["--cfg", "job"]
        proc = run_orchestrator(args + extra, timeout=120)
        assert "model:" in proc.stdout and "workload:" in proc.stdout and "sweep done" not in proc.stdout
        return
    if needs_gpu(args):
        args = [a for a in args if not a.startswith(("engine=", "sampler=", "engine.endpoint."))]
        args += ["engine=simulated", "sampler=none"]
    if CHECK in args and "--plan" not in args:  # a check needs its active sweep's record: run that first
        active = [ACTIVE if a == CHECK else a for a in args if not a.startswith("sweep.check_cells=")]
        run_orchestrator(active + ["sweep.budget=0.05", f"store.dir={tmp_path / 'store'}"], timeout=900)
    proc = run_orchestrator(args + [f"store.dir={tmp_path / 'store'}"], timeout=900, check=False)
    if CHECK in args and "--plan" not in args:
        assert "check of active sweep" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    if "--plan" in args:  # shows the grid, runs nothing
        assert proc.returncode == 0 and "plan of sweep " in proc.stdout and not (tmp_path / "store").exists()
        return
    # finished: 0 when every launched cell ended ok, 3 when some did not (the full grid's overloaded
    # simulated chat cells complete no request in their window)
    assert proc.returncode in (0, 3) and "sweep done:" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "error" not in proc.stderr.lower().replace("errors", ""), proc.stderr[-2000:]
