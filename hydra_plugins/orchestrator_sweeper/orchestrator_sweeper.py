"""Hydra sweeper plugin ``hydra/sweeper=orchestrator``: expands the grid (the sweep file's
``hydra.sweeper.params`` and ``-m`` overrides alike) into cells and dispatches them all at once
through Ray, instead of one Hydra job after another. ``hydra.sweeper.grids`` (a list of axis
maps) makes the sweep the union of several grids, each with ``params`` as its common axes."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class OrchestratorSweeperConf:
    _target_: str = "hydra_plugins.orchestrator_sweeper.orchestrator_sweeper.OrchestratorSweeper"
    params: Optional[Dict[str, str]] = field(default_factory=dict)
    grids: Optional[List[Dict[str, str]]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="orchestrator", node=OrchestratorSweeperConf,
                             provider="orchestrator")


class OrchestratorSweeper(Sweeper):
    def __init__(self, params: Optional[Dict[str, str]] = None, grids: Optional[List[Dict[str, str]]] = None):
        self.params = dict(params or {})
        self.grids = [dict(g) for g in grids] if grids else None
        self.config = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def sweep(self, arguments: List[str]) -> Any:
        from orchestrator.app.hydra_entry import sweep

        return sweep(self.config, self.params, arguments, self.hydra_context.config_loader, self.grids)
