"""The package's layering (docs/architecture.md, "Layers"), checked on every test run: the
import-linter contracts in pyproject.toml (no dependency loop, no import up a layer, type-only and
function-local imports counted), what importing a light package loads, and the size rules."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _loaded_after(statement: str) -> list:
    code = f"import sys; {statement}; print(sorted(m for m in sys.modules if m.startswith('orchestrator')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return eval(out.stdout)  # a printed list of module names


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout and "Contracts: 6 kept, 0 broken." in out.stdout


def test_the_type_checker_finds_no_error():
    """``mypy`` over ``orchestrator/`` with the settings in pyproject.toml: zero errors."""
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", "/dev/null"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0 and "Success: no issues found" in out.stdout, out.stdout[-6000:] + out.stderr[-2000:]


def test_importing_the_config_loads_no_engine_and_no_other_side():
    loaded = _loaded_after("import orchestrator.config.root, orchestrator.config.engine")
    assert not [m for m in loaded if m.startswith("orchestrator.engines")], loaded
    assert set(loaded) <= {"orchestrator", "orchestrator.errors"} | {m for m in loaded if m.startswith("orchestrator.config")}


def test_the_shared_types_load_only_config_and_errors():
    loaded = _loaded_after("import orchestrator.core.cell, orchestrator.core.messages, orchestrator.core.identity")
    sides = {m.split(".")[1] for m in loaded if m.count(".") >= 1}
    assert sides <= {"core", "config", "errors"}, loaded
    heavy = _loaded_after("import orchestrator.core.messages; import sys; "
                          "assert not {'ray', 'hydra', 'vllm', 'torch', 'pynvml'} & set(sys.modules)")
    assert heavy


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_short(path):
    source = path.read_text()
    assert source.count("\n") <= MAX_MODULE_LINES, f"{path.name}: {source.count(chr(10))} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, f"{path.name}: {node.name} is {length} lines"
