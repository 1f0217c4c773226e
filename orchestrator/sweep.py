"""The Hydra entry points: the task function (a single run) and the sweeper (``-m`` and
``+sweep=NAME``). Both build cells with ``grid`` and run them with ``run.run_sweep``."""
from __future__ import annotations

import sys
from typing import Dict, List, Mapping, Sequence

from orchestrator.config import CONFIG_GROUPS
from orchestrator.errors import ConfigError


def plain(cfg) -> Dict:
    """A composed DictConfig as a resolved plain dict, without Hydra's own node."""
    from omegaconf import OmegaConf

    keys = [k for k in cfg.keys() if k != "hydra"]
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True, throw_on_missing=True)


def fail(exc: Exception) -> None:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)


def run_single(cfg) -> None:
    """Task function of ``python -m orchestrator [overrides]`` without ``-m``: one config."""
    from orchestrator.grid import cells_from_configs
    from orchestrator.run import run_sweep

    try:
        base = plain(cfg)
        cells = cells_from_configs([base])
    except ConfigError as exc:
        fail(exc)
    run_sweep(cells, base)


def expand_jobs(cfg, job_overrides: Sequence[Sequence[str]]):
    from orchestrator.grid import expand

    choices = {k: v for k, v in cfg.hydra.runtime.choices.items()}
    base = plain(cfg)
    return base, expand(base, choices, job_overrides)


def job_lists(params: Mapping[str, str], arguments: List[str], config_loader) -> List[List[str]]:
    """The sweeper's job override lists: the sweep file's axes, then the command line's."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    texts = [f"{k}={v}" for k, v in (params or {}).items()]
    for arg in arguments:
        # A single-valued command-line override of a non-group key (store.dir=..., name=...) is
        # already in the composed base config, resolved (interpolations included): keep it there.
        ov = parser.parse_override(arg)
        key = ov.get_key_element().lstrip("+~")
        head = key.split(".")[0]
        if ov.is_sweep_override() or head in CONFIG_GROUPS or head in ("sweep", "hydra") or key in (params or {}):
            texts.append(arg)  # (a key the sweep file also sets: the command line's value wins)
    overrides = parser.parse_overrides(texts)
    return BasicSweeper.split_arguments(overrides, None)[0]


def sweep(cfg, params: Mapping[str, str], arguments: List[str], config_loader) -> None:
    from orchestrator.run import run_sweep

    try:
        jobs = job_lists(params, arguments, config_loader)
        base, cells = expand_jobs(cfg, jobs)
    except ConfigError as exc:
        fail(exc)
    run_sweep(cells, base)
