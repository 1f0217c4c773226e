"""Plug-in registries (``orchestrator.core.registry``): the engines and samplers the registries
find, what each engine declares, the static ``engine`` config schema (one options block per
engine, named after it), discovery of a new engine package, and ``sampler_for``."""
from __future__ import annotations

import dataclasses
import importlib
import sys
import textwrap

import pytest

from orchestrator.config.engine import EngineConfig
from orchestrator.config.engine_options import EngineOptions
from orchestrator.config.groups import WorkloadKind
from orchestrator.core.registry import Registry, registers
from orchestrator.driver.grid import config_of
from orchestrator.driver.overrides import available_options
from orchestrator.energy import SAMPLERS, sampler_for
from orchestrator.energy.null import NullSampler
from orchestrator.energy.nvml import NvmlSampler
from orchestrator.engines import ENGINES
from orchestrator.engines.base import Engine, GpuUse
from orchestrator.engines.hf.engine import HfEngine
from orchestrator.engines.simulated import ModeledPowerSampler, SimulatedEngine
from orchestrator.engines.vllm.offline import VllmOfflineEngine

OFFLINE = ["model=tiny", "quantization=none", "gpu=t4", "workload=offline", "batch_size=2"]

# ------------------------------------------------------------------ engines


def test_registered_engine_names():
    assert ENGINES.names() == ("endpoint", "hf", "simulated", "vllm")


@pytest.mark.parametrize("cls", list(ENGINES), ids=lambda c: f"{c.name}:{c.__name__}")
def test_every_engine_declares_its_capabilities(cls):
    assert issubclass(cls, Engine) and cls.name in ENGINES.names()
    assert cls.quantizations and set(cls.quantizations) <= set(available_options("quantization"))
    assert cls.workload_kinds and set(cls.workload_kinds) <= set(WorkloadKind)
    assert isinstance(EngineConfig(name=cls.name).options(cls.name), EngineOptions)
    assert isinstance(cls.gpu, GpuUse) and isinstance(cls.shared_axes, frozenset)
    assert cls.shared_axes <= {"batch_size", "repeat", "workload"}


def test_engine_config_has_one_block_per_engine_named_after_it():
    assert EngineConfig.blocks() == ENGINES.names()
    assert {f.name for f in dataclasses.fields(EngineConfig)} == {"name", *ENGINES.names()}
    cfg = EngineConfig(name="simulated")
    for name in ENGINES.names():
        block = cfg.options(name)
        assert block is getattr(cfg, name) and dataclasses.is_dataclass(block) and isinstance(block, EngineOptions)
    assert cfg.options("simulated").models_power and not cfg.options("vllm").models_power
    assert type(cfg.options("from_another_distribution")) is EngineOptions  # no block: no knobs
    assert type(cfg.options("name")) is EngineOptions


def test_a_marked_class_that_is_no_engine_is_refused(tmp_path, monkeypatch):
    pkg = f"not_engines_{tmp_path.name.replace('-', '_')}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "thing.py").write_text(
        "from orchestrator.core.registry import registers\n\n@registers('thing')\nclass Thing:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        with pytest.raises(TypeError, match="marked as a engine but does not derive Engine"):
            Registry("engine", pkg, "orchestrator.tests.none", base=Engine).discover()
    finally:
        for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
            del sys.modules[name]


def test_the_decorator_only_marks_the_class():
    @registers("marked")
    class Marked(Engine):
        def start(self):
            pass

        def run(self, plan):
            raise NotImplementedError

    assert Marked.name == "marked" and "marked" not in ENGINES.names()


def test_variants_of_a_name_cover_distinct_workload_kinds():
    for name in ENGINES.names():
        kinds = [k for cls in ENGINES.variants(name) for k in cls.workload_kinds]
        assert len(kinds) == len(set(kinds)), name
    with pytest.raises(KeyError, match="registered: endpoint, hf, simulated, vllm"):
        ENGINES.variants("nope")


# ------------------------------------------------------------------ a new engine package

TOY_INIT = '''
"""A third-party engine package: its own registry, as orchestrator.engines has."""
from orchestrator.core.registry import Registry
from orchestrator.engines.base import Engine

TOY_ENGINES = Registry("engine", __name__, "orchestrator.tests.toy_engines", base=Engine)
'''

TOY_ENGINE = '''
from orchestrator.config.groups import WorkloadKind
from orchestrator.engines.base import Engine, GpuUse, register_engine


@register_engine("toy")
class ToyEngine(Engine):
    quantizations = frozenset({{"none"}})
    workload_kinds = frozenset({{WorkloadKind.offline}})
    gpu = GpuUse.none

    def start(self):
        pass

    def run(self, plan):
        raise NotImplementedError
'''


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """A package ``toy_engines_<n>`` under tmp_path (on sys.path) with one engine module and one
    private module that must not be imported; removed from sys.modules afterwards."""
    pkg = f"toy_engines_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / pkg
    root.mkdir()
    (root / "__init__.py").write_text(textwrap.dedent(TOY_INIT))
    (root / "toy.py").write_text(textwrap.dedent(TOY_ENGINE.format(pkg=pkg)))
    (root / "_private.py").write_text("raise RuntimeError('private modules are not plug-ins')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield pkg
    for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
        del sys.modules[name]


def test_a_new_engine_is_discovered_in_its_package(toy_package):
    before = ENGINES.names()
    pkg = importlib.import_module(toy_package)
    registry = pkg.TOY_ENGINES
    assert isinstance(registry, Registry) and registry is not ENGINES
    assert f"{toy_package}.toy" not in sys.modules  # nothing imported until the registry is asked
    registry.discover()
    assert registry.names() == ("toy",)
    (cls,) = registry.variants("toy")
    assert cls.__name__ == "ToyEngine" and cls.name == "toy" and issubclass(cls, Engine)
    assert cls.workload_kinds == frozenset({WorkloadKind.offline})
    assert f"{toy_package}._private" not in sys.modules
    registry.discover()  # once only: nothing registered twice
    assert registry.variants("toy") == [cls]
    assert ENGINES.names() == before  # the global registry is untouched


# ------------------------------------------------------------------ samplers


def test_registered_sampler_names():
    assert SAMPLERS.names() == ("none", "nvml")
    assert SAMPLERS.variants("nvml") == [NvmlSampler] and SAMPLERS.variants("none") == [NullSampler]


def test_a_simulated_engine_is_measured_by_its_own_power_model():
    for sampler in ("auto", "nvml", "none"):
        cfg = config_of([*OFFLINE, "engine=simulated", f"sampler={sampler}"])
        assert isinstance(sampler_for(cfg.sampler, SimulatedEngine(cfg, 2)), ModeledPowerSampler)


def test_sampler_none_is_the_null_sampler():
    cfg = config_of([*OFFLINE, "engine=vllm", "sampler=none"])
    s = sampler_for(cfg.sampler, VllmOfflineEngine(cfg, 2))
    assert isinstance(s, NullSampler) and s.reason == "sampler=none"
    trace = s.stop()
    assert trace.source == "none" and trace.note == "sampler=none"


def test_auto_on_an_engine_without_a_gpu_is_the_null_sampler_with_the_reason():
    cfg = config_of([*OFFLINE, "engine=hf", "sampler=auto"])
    engine = HfEngine(cfg, 2)
    assert engine.uses_gpu is False  # not started: no device resolved yet
    s = sampler_for(cfg.sampler, engine)
    assert isinstance(s, NullSampler) and "ran on the CPU" in s.reason and "hf" in s.reason


def test_auto_on_a_gpu_engine_is_nvml_at_the_configured_interval():
    cfg = config_of([*OFFLINE, "engine=vllm", "sampler=auto", "sampler.interval_s=0.05"])
    s = sampler_for(cfg.sampler, VllmOfflineEngine(cfg, 2))
    assert isinstance(s, NvmlSampler) and s.interval_s == 0.05 and s.measures_idle_baseline
