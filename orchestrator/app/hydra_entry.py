"""The Hydra entry points: the task function (``python -m orchestrator [overrides]``, one config)
and the sweeper (``-m`` and ``+sweep=NAME``). Both turn Hydra's composed config into the typed
``Config``, build cell configs with ``grid`` and run them with ``runner.run_sweep``."""
from __future__ import annotations

import sys
from typing import Dict, List, Mapping, Optional, Sequence

from orchestrator.app.argv import fail
from orchestrator.config.root import CONFIG_GROUPS, Config
from orchestrator.driver.grid import cell_configs, expand
from orchestrator.driver.overrides import override_head, override_key
from orchestrator.driver.runner import run_sweep
from orchestrator.errors import ConfigError
from orchestrator.search.active_check import run_active_check
from orchestrator.search.active_sweep import run_active_sweep
from orchestrator.search.entry import run_search


def register_configs() -> None:
    """Register the root schema with Hydra's ConfigStore (``base_config``, the first entry of
    ``conf/config.yaml``'s defaults), so every group option — each engine's options block
    included (``config.engine_options``) — is validated against its dataclass at compose time."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=Config)


def typed(cfg) -> Config:
    """A composed DictConfig as the typed root ``Config`` (interpolations resolved), without
    Hydra's own node."""
    from omegaconf import OmegaConf

    register_configs()
    keys = [k for k in cfg.keys() if k != "hydra"]
    plain = OmegaConf.masked_copy(cfg, keys)
    OmegaConf.resolve(plain)
    obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), plain))
    if not isinstance(obj, Config):  # (a structured merge of the Config schema is one)
        raise TypeError(f"the composed config is a {type(obj).__name__}, not a Config")
    return obj


def run_single(cfg) -> None:
    """Task function of ``python -m orchestrator [overrides]`` without ``-m``: one config."""
    try:
        base = typed(cfg)
        configs = cell_configs([base])
        outcome = run(configs, base)
    except ConfigError as exc:  # raised before any Ray task (config values, store)
        fail(exc)
    if outcome.exit_code():
        sys.exit(outcome.exit_code())


def run(configs, base: Config):
    """A sweep of every cell, an active one (``sweep.strategy=active``) or the check of one
    (``sweep.strategy=check``); the plan of either is the grid's."""
    if base.sweep.active and not base.plan:
        return run_active_sweep(configs, base)
    if base.sweep.check and not base.plan:
        return run_active_check(configs, base)
    return run_sweep(configs, base)


def expand_jobs(cfg, job_overrides: Sequence[Sequence[str]]):
    """-> (the base ``Config``, every cell config of the jobs)."""
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items()}
    base = typed(cfg)
    return base, expand(base, choices, job_overrides)


def job_lists(params: Mapping[str, str], arguments: List[str], config_loader,
              grids: Optional[Sequence[Mapping[str, str]]] = None) -> List[List[str]]:
    """The sweeper's job override lists: the sweep file's axes, then the command line's. With
    ``grids`` (``hydra.sweeper.grids``) the sweep is the union of those grids, in their order,
    each being ``params`` with the grid's own axes (which win), then the command line's; a job
    two grids share runs once."""
    if not grids:
        return _grid_jobs(params, arguments, config_loader)
    jobs: Dict[tuple, List[str]] = {}
    for grid in grids:
        for job in _grid_jobs({**(params or {}), **grid}, arguments, config_loader):
            jobs.setdefault(tuple(sorted(job)), job)
    return list(jobs.values())


def _grid_jobs(params: Mapping[str, str], arguments: List[str], config_loader) -> List[List[str]]:
    """The job override lists of one grid: its axes, then the command line's."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    for key in params or {}:
        if key.startswith("sweep."):
            raise ConfigError(f"{key}: sweep.* settings are not axes: set them outside hydra.sweeper.params "
                              "(in the sweep file's body or on the command line)")
    texts = [f"{k}={v}" for k, v in (params or {}).items()]
    for arg in arguments:
        # A single-valued command-line override of a non-group key (store.dir=..., name=...,
        # sweep.strategy=... — not the sweep file, +sweep=NAME) is already in the composed base
        # config, resolved (interpolations included): keep it there.
        ov = parser.parse_override(arg)
        key, head = override_key(ov), override_head(ov)
        if head == "sweep" and key != "sweep" and ov.is_sweep_override():
            raise ConfigError(f"{arg}: sweep.* settings hold for the whole sweep: give one value, not an axis")
        if ov.is_sweep_override() or head in CONFIG_GROUPS or key == "sweep" or head == "hydra" or key in (params or {}):
            texts.append(arg)  # (a key the sweep file also sets: the command line's value wins)
    overrides = parser.parse_overrides(texts)
    return BasicSweeper.split_arguments(overrides, None)[0]


def sweep(cfg, params: Mapping[str, str], arguments: List[str], config_loader,
          grids: Optional[Sequence[Mapping[str, str]]] = None) -> None:
    try:
        jobs = job_lists(params, arguments, config_loader, grids)
        base, configs = expand_jobs(cfg, jobs)
        if base.search is not None and not base.plan:  # +search=NAME: the jobs are the space searched
            choices = dict(cfg.hydra.runtime.choices.items())
            run_search(base, jobs, configs, lambda more: expand(base, choices, more))
        else:
            outcome = run(configs, base)
            if outcome.exit_code():
                sys.exit(outcome.exit_code())
    except ConfigError as exc:  # raised before any Ray task (config values, store)
        fail(exc)
