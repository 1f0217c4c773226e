"""The root ``Config`` that Hydra composes, and ``CellConfig``: what one cell runs.

At run time the code handles these objects (``OmegaConf.to_object``), never nested dicts.
``Config.validate()`` runs every group's own ``validate()``; a failure is one ``ConfigError``
line naming the key and what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from omegaconf import MISSING

from orchestrator.config.engine import EngineConfig
from orchestrator.config.fields import added, check, from_dict
from orchestrator.config.groups import (
    DispatchConfig,
    GpuConfig,
    LogLevel,
    ModelConfig,
    QuantizationConfig,
    SamplerConfig,
    StoreConfig,
    WorkloadConfig,
)
from orchestrator.config.search import SearchConfig
from orchestrator.config.sweep_strategy import SweepStrategyConfig

CONFIG_GROUPS = ("model", "quantization", "gpu", "workload", "engine", "sampler")
"""The groups whose choice is an axis of the grid (``sweep`` only sets axes). The batch size is an
axis too, but a plain integer key (``batch_size=8``): Hydra rejects integer group choices, and any
value must work, not only those with a file."""

GROUP_SCHEMAS = {
    "model": ModelConfig,
    "quantization": QuantizationConfig,
    "gpu": GpuConfig,
    "workload": WorkloadConfig,
    "engine": EngineConfig,
    "sampler": SamplerConfig,
}


@dataclass
class Config:
    """The root config: one choice per group, plus sweep-wide settings."""

    model: ModelConfig = MISSING
    quantization: QuantizationConfig = MISSING
    gpu: GpuConfig = MISSING
    workload: WorkloadConfig = MISSING
    engine: EngineConfig = MISSING
    sampler: SamplerConfig = MISSING
    batch_size: int = 8  # vLLM max_num_seqs; offline/HF: prompts per static batch
    # GPUs of the cell's type one cell spans on one node (vLLM tensor parallelism; 1: today's cells)
    tensor_parallel_size: int = 1
    name: str = "default"
    repeats: int = 1
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    search: Optional[SearchConfig] = None  # set by +search=NAME: the sweep's axes are searched, not swept
    sweep: SweepStrategyConfig = field(default_factory=SweepStrategyConfig)  # sweep.strategy=active: measure a part
    log_level: LogLevel = LogLevel.INFO  # the package's loggers, on the driver and on every worker
    plan: bool = False  # --plan: print what the sweep would run (cells, engine starts, GPU time), run nothing

    def validate(self, checked: Optional[Dict[int, object]] = None) -> None:
        """The sweep-wide checks, then every group's own ``validate()`` (``ConfigError`` on the
        first). ``checked``: group objects already validated, by id (a grid shares them); the
        ones validated here are added."""
        check("batch_size", self.batch_size, isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool)
              and self.batch_size >= 1, "must be an integer >= 1")
        check("repeats", self.repeats, self.repeats >= 1, "must be >= 1")
        check("tensor_parallel_size", self.tensor_parallel_size,
              isinstance(self.tensor_parallel_size, int) and not isinstance(self.tensor_parallel_size, bool)
              and self.tensor_parallel_size >= 1, "must be an integer >= 1 (GPUs of one node per cell)")
        self.sweep.validate()
        if self.search is not None:
            check("sweep.strategy", self.sweep.strategy.value, not (self.sweep.active or self.sweep.check),
                  "a search chooses its own cells: drop sweep.strategy or +search")
            self.search.validate()
            check("repeats", self.repeats, self.repeats == 1,
                  "a search measures one repeat per trial (noise: search.confirm_repeats)")
        checked = {} if checked is None else checked
        for group in (self.engine, self.sampler, self.model, self.quantization, self.gpu, self.workload,
                      self.dispatch, self.store):
            if checked.get(id(group)) is group:
                continue
            group.validate()
            checked[id(group)] = group


@dataclass(frozen=True)
class CellConfig:
    """What one cell runs. ``quantization`` is the effective one (a model that pins its
    checkpoint's format replaces the axis); ``engine.name`` is what the user asked for (maybe
    ``auto``); the engine that runs it is on the ``Cell``."""

    model: ModelConfig
    quantization: QuantizationConfig
    gpu: GpuConfig
    workload: WorkloadConfig
    engine: EngineConfig
    sampler: SamplerConfig
    batch_size: int
    repeat: int = 0
    tensor_parallel_size: int = added(1)  # GPUs the cell spans (one node); in its identity only when not 1

    def label(self) -> str:
        tp = f"/tp{self.tensor_parallel_size}" if self.tensor_parallel_size != 1 else ""
        return (f"{self.model.name}/{self.quantization.name}/{self.gpu.name}{tp}/bs{self.batch_size}/"
                f"{self.workload.name}/r{self.repeat}")


def cell_config_from_json(text: str) -> CellConfig:
    """A stored ``config_json`` (any schema version) as a typed ``CellConfig``: fields that no
    longer exist are dropped, new ones take their defaults."""
    import json

    return from_dict(CellConfig, json.loads(text))
