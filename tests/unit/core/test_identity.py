"""A cell's identity (``orchestrator.core.identity``): only the declared identity fields of the engine
that actually runs the cell (``engine=auto`` resolved) and, for a measured engine, the sampler's
settings go into its ``cell_id``; settings (timeouts, cache directories, pacing) and other engines'
blocks never do. Ids are 16 hex digits, the same in every process."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from orchestrator.config.engine_options import SimulatedOptions, VllmOptions
from orchestrator.config.fields import identity_of
from orchestrator.core.cell import EngineChoice
from orchestrator.core.identity import cell_identity, digest
from orchestrator.driver import grid
from orchestrator.driver.grid import config_of
from tests.conftest import ROOT

BASE = ["model=llama2_7b", "quantization=none", "gpu=h100", "workload=offline", "batch_size=4",
        "workload.num_batches=2", "sampler=auto"]
SIMULATED = [*BASE, "engine=simulated"]
VLLM = [*BASE, "engine=vllm"]
AUTO = [*BASE, "engine=auto"]
TO_SIMULATED = {"H100": EngineChoice("simulated", "test: no H100 with vllm")}
TO_VLLM = {"H100": EngineChoice("vllm", "test: an H100 node has vllm")}


def cell(overrides, auto=None):
    (c,) = grid.cells([config_of(overrides)], auto or {})
    return c


def cell_id(overrides, auto=None) -> str:
    return cell(overrides, auto).cell_id


# ------------------------------------------------------------------ settings are not identity

@pytest.mark.parametrize("setting", [
    "engine.vllm.startup_timeout_s=900",
    "engine.vllm.compile_cache_dir=/x",
    "engine.hf.use_cache=false",
    "engine.simulated.pace_s=2",
])
def test_settings_and_other_engines_knobs_leave_a_simulated_cell_alone(setting):
    assert config_of([*SIMULATED, setting]) != config_of(SIMULATED)  # the override did apply
    assert cell_id([*SIMULATED, setting]) == cell_id(SIMULATED)


def test_all_those_settings_at_once_leave_a_simulated_cell_alone():
    every = ["engine.vllm.startup_timeout_s=900", "engine.vllm.compile_cache_dir=/x", "engine.hf.use_cache=false",
             "engine.simulated.pace_s=2"]
    assert cell_id([*SIMULATED, *every]) == cell_id(SIMULATED)


def test_a_simulator_knob_changes_a_simulated_cell():
    assert cell_id([*SIMULATED, "engine.simulated.memory_efficiency=0.7"]) != cell_id(SIMULATED)


def test_a_vllm_cell_changes_with_its_own_knobs_only():
    base = cell_id(VLLM)
    assert cell_id([*VLLM, "engine.vllm.enforce_eager=true"]) != base
    assert cell_id([*VLLM, "engine.hf.use_cache=false"]) == base
    assert cell_id([*VLLM, "engine.simulated.memory_efficiency=0.7"]) == base
    assert cell_id([*VLLM, "engine.vllm.startup_timeout_s=900", "engine.vllm.compile_cache_dir=/x"]) == base


def test_an_added_option_at_its_default_leaves_every_cell_alone():
    """``host_step_s`` came after the simulated stores were written: at its default (0) a cell
    keeps the id it had without the field; set, it is another cell."""
    assert "host_step_s" not in identity_of(SimulatedOptions())
    assert identity_of(SimulatedOptions(host_step_s=0.015))["host_step_s"] == 0.015
    base = cell_id(SIMULATED)
    assert cell_id([*SIMULATED, "engine.simulated.host_step_s=0.0"]) == base
    assert cell_id([*SIMULATED, "engine.simulated.host_step_s=0.015"]) != base


def test_setting_fields_are_declared_and_left_out():
    vllm = identity_of(VllmOptions())
    assert "startup_timeout_s" not in vllm and "compile_cache_dir" not in vllm and "enforce_eager" in vllm
    sim = identity_of(SimulatedOptions())
    assert "pace_s" not in sim and "memory_efficiency" in sim


def test_identity_holds_only_the_resolved_engines_block():
    cfg = config_of(SIMULATED)
    ident = cell_identity(cfg, "simulated")
    assert ident["engine"] == {"name": "simulated", "simulated": identity_of(cfg.engine.simulated)}
    assert "sampler" not in ident  # the simulator models its own power
    v = cell_identity(config_of(VLLM), "vllm")
    assert set(v["engine"]) == {"name", "vllm"} and v["sampler"] == identity_of(config_of(VLLM).sampler)
    assert (ident["batch_size"], ident["repeat"]) == (4, 0)
    # grid.cells hashes exactly this identity
    assert cell_id(SIMULATED) == digest(cell_identity(cfg, "simulated"))


# ------------------------------------------------------------------ engine=auto

def test_auto_resolved_to_different_engines_gets_different_ids():
    sim, vllm = cell(AUTO, TO_SIMULATED), cell(AUTO, TO_VLLM)
    assert (sim.engine, vllm.engine) == ("simulated", "vllm")
    assert sim.engine_reason == "test: no H100 with vllm" and vllm.engine_reason == "test: an H100 node has vllm"
    assert sim.config.engine.name == vllm.config.engine.name == "auto"
    assert sim.cell_id != vllm.cell_id


def test_auto_resolved_to_simulated_is_the_same_cell_as_engine_simulated():
    assert cell_id(AUTO, TO_SIMULATED) == cell_id(SIMULATED)
    assert cell_id(AUTO, TO_VLLM) == cell_id(VLLM)


def test_only_auto_cells_need_a_resolution():
    assert grid.needs_auto([config_of(AUTO), config_of(SIMULATED), config_of([*AUTO, "gpu=t4"])]) == ["H100", "T4"]
    assert grid.needs_auto([config_of(SIMULATED), config_of(VLLM)]) == []


# ------------------------------------------------------------------ the sampler

@pytest.mark.parametrize("sampler", [["sampler.interval_s=0.05"], ["sampler=none"], ["sampler=nvml"],
                                     ["sampler.idle_baseline_s=1"]])
def test_sampler_settings_change_a_measured_cell_but_not_a_simulated_one(sampler):
    assert cell_id([*SIMULATED, *sampler]) == cell_id(SIMULATED)
    assert cell_id([*VLLM, *sampler]) != cell_id(VLLM)


# ------------------------------------------------------------------ the id itself

def test_ids_are_16_hex_digits_and_distinct_per_cell():
    ids = [cell_id(SIMULATED), cell_id(VLLM), cell_id([*SIMULATED, "batch_size=8"]), cell_id([*SIMULATED, "repeat=1"])]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert cell_id(SIMULATED) == cell_id(list(SIMULATED))  # same config, same id


def test_ids_are_the_same_in_another_process():
    code = ("import sys; from orchestrator.driver import grid; "
            "print(grid.cells([grid.config_of(sys.argv[1:])], {})[0].cell_id)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, *SIMULATED], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.strip() == cell_id(SIMULATED)
