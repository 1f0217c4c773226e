"""What crosses Ray between the driver and a worker: frozen dataclasses, nothing else.

Driver -> worker: a ``UnitSpec`` (the cells that share one engine start). Worker -> driver, as
the items of a streaming-generator task: first a ``TaskStarted`` (so the driver knows what runs
and since when, for progress and timeouts), then one ``CellResult`` per cell, each as soon as it
exists (a later failure loses nothing already measured). Beside them, best effort, ``CellPhase``
messages (``phases.CellPhase``) go to the driver's phase board (``phases.PhaseBoard``): what each
running cell is doing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from orchestrator.core.cell import Cell
from orchestrator.errors import Status

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class UnitSpec:
    """One Ray task: cells that share an engine start (same engine, every identity field equal
    but batch size and repeat), or a single cell. ``attempt`` counts from 1."""

    key: str
    engine: str
    engine_reason: str
    sweep: str
    cells: Tuple[Cell, ...]
    on_gpu: bool = True
    attempt: int = 1
    node_id: Optional[str] = None  # run on this Ray node (the one holding the GPUs the cells measure)
    log_level: str = "INFO"  # the package's log level on the worker (``log_level``)
    phase_board: Optional[Any] = field(default=None, compare=False)  # a PhaseBoard actor handle, or None

    @property
    def max_batch_size(self) -> int:
        return max(c.config.batch_size for c in self.cells)

    @property
    def gpus(self) -> int:
        """GPUs of one node the task holds (a unit's cells share an engine, so their
        ``tensor_parallel_size``)."""
        return int(self.cells[0].config.tensor_parallel_size)


@dataclass(frozen=True)
class TaskStarted:
    """The task began on its worker (``started_unix_s``: the worker's clock, informative only;
    the driver times tasks on its own clock)."""

    started_unix_s: float


@dataclass(frozen=True)
class CellResult:
    """One cell's outcome: its status, whether the driver may retry it, and its Arrow tables
    (``runs`` always; ``requests`` and ``power`` for measured cells)."""

    cell_id: str
    status: Status
    retryable: bool
    tables: Dict[str, "pa.Table"] = field(hash=False)
