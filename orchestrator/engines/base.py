"""The engine protocol: cheap to build and pickle anywhere, heavy only after ``start()``.

Lifecycle on a worker: ``start()`` once (timed, not measured) -> ``run(plan)`` once per cell
that shares the engine (each run returns a ``WindowRun`` on the monotonic clock, seconds) ->
``stop()`` (always, also after a failure; idempotent). An engine with no hardware to measure
(the simulator) returns its power model from ``modeled_sampler()``; real engines leave energy
to the configured sampler.

Capabilities are class attributes, read by the grid (pre-launch checks, identity), the
dispatcher (placement, engine sharing) and ``engine=auto``:

- ``quantizations``: the ``quantization`` options it runs (by name); ``refused_quantizations``:
  for some of the others, one line saying why not and what to use instead (the ``unsupported``
  reason, through ``quantization_refusal``).
- ``workload_kinds``: offline / open loop / closed loop.
- ``shared_axes``: the identity keys (``batch_size``, ``repeat``, ``workload``) in which cells
  may differ and still run on one engine start; ``share_key`` is the rest of the identity,
  what the start depends on (cells with equal keys share one start).
- ``gpu``: ``required`` (a GPU of the cell's type), ``optional`` (on one when the cluster has
  that type, else on the CPU) or ``none``.
- its knobs are the ``engine.<name>`` block of ``config.engine.EngineConfig`` (a dataclass of
  ``config.engine_options``; only this block is part of the identity of the cells it runs).
- ``auto_rank`` (None: never) and ``auto_modules``: the engines ``engine=auto`` may use for a GPU
  type are, by rank, those whose ``auto_modules`` all import on a node of that type and, for an
  engine that can use a GPU (``gpu`` required or optional), where the cluster offers that type;
  an engine that uses no GPU (the simulator) only where none of those is usable. Each cell
  runs on the first of them that does not refuse it before launch (``driver.grid.cells``).
- ``hosts_model``: False for an engine that measures a model served elsewhere (``endpoint``): no
  VRAM check before launch.

Hooks with defaults that do nothing: ``check_before_launch(configs)`` (the driver, before any Ray
task: raise ``ConfigError`` for input that cannot run, e.g. an endpoint that does not answer);
``placement_gpu_uuids(config)`` (GPUs, by NVML UUID, whose Ray node the cell's task must run on);
``energy_gpu_uuids()`` (GPUs whose energy the sampler sums; () = the GPU the engine runs on) and
``no_energy_reason()`` (why there is no energy, when the engine runs on no GPU).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, ClassVar, Dict, FrozenSet, List, Mapping, Optional, Tuple, TypeVar

from orchestrator.client.metrics import WindowRun
from orchestrator.client.workload import WorkloadPlan
from orchestrator.config.groups import WorkloadKind
from orchestrator.core.phases import NO_REPORTER, PhaseReporter
from orchestrator.core.registry import registers

if TYPE_CHECKING:
    from orchestrator.config.root import CellConfig
    from orchestrator.energy.base import Sampler

ALL_KINDS = frozenset(WorkloadKind)


E = TypeVar("E", bound="type[Engine]")


def register_engine(name: str) -> Callable[[E], E]:
    """Class decorator: the engine plug-in ``name`` (``engine=<name>``; found by ``engines.ENGINES``).
    Variants of one name run distinct workload kinds."""
    return registers(name)


class GpuUse(str, Enum):
    """What an engine needs of the GPU the cell names."""

    required = "required"
    optional = "optional"
    none = "none"


class Engine(ABC):
    name: ClassVar[str] = ""  # set by @register_engine
    quantizations: ClassVar[FrozenSet[str]] = frozenset()
    refused_quantizations: ClassVar[Mapping[str, str]] = MappingProxyType({})  # name -> why not, instead
    workload_kinds: ClassVar[FrozenSet[WorkloadKind]] = frozenset()
    shared_axes: ClassVar[FrozenSet[str]] = frozenset()  # empty: one engine start per cell
    gpu: ClassVar[GpuUse] = GpuUse.required
    auto_rank: ClassVar[Optional[int]] = None
    auto_modules: ClassVar[Tuple[str, ...]] = ()
    hosts_model: ClassVar[bool] = True  # False: the model is served elsewhere (no VRAM check)
    tensor_parallel: ClassVar[bool] = False  # True: runs a cell over tensor_parallel_size GPUs of one node
    starts_processes: ClassVar[bool] = True  # False: runs in the worker alone (no reaper: ~0.1 s a unit)
    typical_start_s: ClassVar[float] = 0.0  # a start's seconds when no store has measured one (--plan's estimate)
    # a cell's wall seconds where its windows are modeled, not waited out (the simulator); None:
    # its share of the engine start plus its workload's window (the live ETA, ``driver.eta``)
    typical_cell_s: ClassVar[Optional[float]] = None

    def __init__(self, config: "CellConfig", max_batch_size: int):
        """``config``: the first cell's config; ``max_batch_size``: the largest batch of the cells
        that will share this engine."""
        self.config = config
        self.cell_config = config  # the cell being run (the worker sets it before each run)
        self.options = config.engine.options(self.name)
        self.max_batch_size = int(max_batch_size)
        self.progress: PhaseReporter = NO_REPORTER  # the worker sets the cell's reporter

    @property
    def uses_gpu(self) -> bool:
        """True when this instance runs on a GPU (``optional`` engines decide in ``start``)."""
        return self.gpu is GpuUse.required

    @classmethod
    def option_refusal(cls, config: "CellConfig") -> str:
        """One line when this engine variant cannot honour an option of the cell's engine block
        (its ``unsupported`` reason before launch), else ''."""
        return ""

    @classmethod
    def quantization_refusal(cls, quantization: str) -> str:
        """One line: this engine does not run ``quantization`` (and why, and what to use
        instead, where ``refused_quantizations`` says)."""
        why = cls.refused_quantizations.get(quantization)
        return f"engine {cls.name} does not run quantization {quantization}" + (f": {why}" if why else "")

    @classmethod
    def share_key(cls, identity: Dict) -> Dict:
        """The part of a cell's identity (``identity.cell_identity``) its engine start depends on:
        everything but ``shared_axes``."""
        return {k: v for k, v in identity.items() if k not in cls.shared_axes}

    @classmethod
    def check_before_launch(cls, configs: List["CellConfig"]) -> List[str]:
        """On the driver, before any Ray task: raise ``ConfigError`` (one line) when the cells
        this engine would run cannot run at all. -> lines for the command line's output."""
        return []

    @classmethod
    def placement_gpu_uuids(cls, config: "CellConfig") -> Tuple[str, ...]:
        """GPUs (NVML UUIDs) whose Ray node must run the cell's task; () places by resources."""
        return ()

    @abstractmethod
    def start(self) -> None:
        """Load the model; raise ``CellFailure`` for known failures (oom, startup_timeout...)."""

    @abstractmethod
    def run(self, plan: WorkloadPlan) -> WindowRun:
        """Drive the plan and report every request; say what it is doing through
        ``self.progress(Phase.warmup | measuring | draining, done, total, unit)``."""

    def stop(self) -> None:
        """Free everything ``start`` took (idempotent)."""

    def stop_report(self) -> Dict:
        """What ``stop()`` found (e.g. GPU memory freed), attached to the ok rows; {} if nothing."""
        return {}

    def modeled_sampler(self) -> Optional["Sampler"]:
        """A sampler over the engine's own power model (simulator only); None: use the config's."""
        return None

    def versions(self) -> Dict[str, str]:
        return {}

    def gpu_uuid(self) -> Optional[str]:
        """UUID of the GPU this engine runs on, if any (the sampler reads that one)."""
        return None

    def energy_gpu_uuids(self) -> Tuple[str, ...]:
        """GPUs whose energy a cell is charged with, summed (); () = the one it runs on."""
        return ()

    def no_energy_reason(self) -> str:
        """Why a GPU sampler has nothing to read for this engine (it runs on no GPU)."""
        return f"engine {self.name} ran on the CPU: no energy source"
