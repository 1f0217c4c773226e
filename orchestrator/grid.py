"""Config -> cells (pure). One mechanism for ``+sweep=NAME`` and ``-m key=a,b``.

Hydra's sweeper turns the sweep's axes into one list of override strings per job; this module
turns each list into a cell config without composing it through Hydra again (one compose per job
would cost ~20 ms; a 10,000-cell grid must expand in under 2 s). Each group option file is read
once, merged into its dataclass schema (so types are checked) and cached; value overrides
(``workload.duration_s=10``) are applied on top and re-checked. ``tests/unit/test_grid.py``
checks the result equals a real Hydra compose of the same overrides.

A cell's ``cell_id`` is a hash of its canonical config (the groups, the batch size and the repeat
index; not where results go or how Ray is reached), so the same cell has the same id in any
sweep, on any machine.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from orchestrator.config import CONFIG_GROUPS, GROUP_SCHEMAS
from orchestrator.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
IGNORED_GROUPS = ("sweep", "hydra")
ARRIVALS = ("poisson", "constant", "gamma", "closed", "offline")
LENGTH_DISTS = ("fixed", "uniform", "normal", "lognormal")
ENGINES = ("auto", "simulated", "vllm", "hf")
SAMPLERS = ("auto", "nvml", "none")


@dataclass(frozen=True)
class Cell:
    """One measurement: a canonical config, its id, and a pre-launch status if it cannot run."""

    cell_id: str
    config: Dict = field(hash=False, compare=False)
    status: Optional[str] = None  # None: launch it; else "unsupported" | "infeasible"
    reason: str = ""

    @property
    def engine(self) -> str:
        return self.config["engine"]["name"]

    @property
    def gpu(self) -> Mapping:
        return self.config["gpu"]

    @property
    def batch_size(self) -> int:
        return self.config["batch_size"]

    def label(self) -> str:
        c = self.config
        return (
            f"{c['model']['name']}/{c['quantization']['name']}/{c['gpu']['name']}/"
            f"bs{c['batch_size']}/{c['workload']['name']}/r{c['repeat']}"
        )


def available_options(group: str, conf_dir: Path = CONF_DIR) -> List[str]:
    opts = [p.stem for p in (conf_dir / group).glob("*.yaml")]
    return sorted(opts, key=lambda o: (not o.isdigit(), int(o) if o.isdigit() else 0, o))


@lru_cache(maxsize=None)
def _option_node(group: str, option: str, conf_dir: Path = CONF_DIR) -> Dict:
    """The option's YAML merged into its schema (types checked), as a plain dict."""
    from omegaconf import OmegaConf

    path = conf_dir / group / f"{option}.yaml"
    if not path.is_file():
        allowed = ", ".join(available_options(group, conf_dir))
        raise ConfigError(f"{group}={option}: unknown option; allowed: {allowed}")
    node = OmegaConf.merge(OmegaConf.structured(GROUP_SCHEMAS[group]), OmegaConf.load(path))
    return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)


@lru_cache(maxsize=None)
def _checked_group(group: str, option: str, overrides: Tuple[Tuple[str, str], ...]) -> Dict:
    """Option node with value overrides (dotted key below the group, raw string value) applied
    through the schema, so a wrong key or type fails with the key's name."""
    node = _option_node(group, option)
    if not overrides:
        return node
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    conf = OmegaConf.merge(OmegaConf.structured(GROUP_SCHEMAS[group]), node)
    for key, value in overrides:
        try:
            OmegaConf.update(conf, key, _parse_value(value), merge=True)
            result = OmegaConf.to_container(conf, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            msg = str(exc).splitlines()[0]
            raise ConfigError(f"{group}.{key}={value}: {msg}") from None
    return result


@lru_cache(maxsize=None)
def _parse_override(text: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(text)


@lru_cache(maxsize=None)
def _parse_value(value: str):
    import yaml

    return yaml.safe_load(value) if value != "" else ""


def _split(override_texts: Sequence[str]):
    """-> ({group: option}, {group: ((subkey, value), ...)}, {top_key: value})."""
    choices: Dict[str, str] = {}
    values: Dict[str, List[Tuple[str, str]]] = {}
    top: Dict[str, str] = {}
    for text in override_texts:
        ov = _parse_override(text)
        key = ov.get_key_element().lstrip("+~")
        head = key.split(".")[0].split("@")[0]
        if head in IGNORED_GROUPS:
            continue
        if ov.is_delete() or ov.is_add() or ov.is_force_add():
            raise ConfigError(f"{text}: only plain 'key=value' overrides can be swept")
        value = ov.get_value_element_as_str()
        if head in CONFIG_GROUPS and "." not in key:
            choices[head] = value
        elif head in CONFIG_GROUPS:
            values.setdefault(head, []).append((key.split(".", 1)[1], value))
        else:
            top[key] = value
    return choices, {g: tuple(v) for g, v in values.items()}, top


def job_config(base: Mapping, base_choices: Mapping[str, str], override_texts: Sequence[str]) -> Dict:
    """The resolved config (plain dict) of one sweeper job: ``base`` with the job's overrides.

    Group nodes are shared, cached dicts: never mutate a job config in place."""
    choices, values, top = _split(override_texts)
    cfg = dict(base)
    for group in CONFIG_GROUPS:
        option = choices.get(group, base_choices[group])
        cfg[group] = _checked_group(group, str(option), values.get(group, ()))
    for key, value in top.items():
        _set_top(cfg, key, value)
    return cfg


def _set_top(cfg: Dict, key: str, value: str) -> None:
    """Set a non-group key, copying only the dicts on its path (the rest stays shared)."""
    parts = key.split(".")
    node = cfg
    for part in parts[:-1]:
        if part not in node or not isinstance(node[part], dict):
            raise ConfigError(f"{key}={value}: unknown key '{part}'")
        node[part] = dict(node[part])
        node = node[part]
    if parts[-1] not in node:
        raise ConfigError(f"{key}={value}: unknown key")
    old, new = node[parts[-1]], _parse_value(value)
    if old is not None and new is not None and not isinstance(new, type(old)):
        if not (isinstance(old, float) and isinstance(new, int)):
            raise ConfigError(f"{key}={value}: expected {type(old).__name__}")
    node[parts[-1]] = new


# --------------------------------------------------------------------------- validation


def validate(cfg: Mapping) -> None:
    """Raise ConfigError (one line naming the key and what is allowed) on bad values."""
    checks = [
        ("batch_size", isinstance(cfg["batch_size"], int) and cfg["batch_size"] >= 1, "must be an integer >= 1"),
        ("repeats", cfg.get("repeats", 1) >= 1, "must be >= 1"),
        ("workload.arrival", cfg["workload"]["arrival"] in ARRIVALS, f"allowed: {', '.join(ARRIVALS)}"),
        ("engine", cfg["engine"]["name"] in ENGINES, f"allowed: {', '.join(ENGINES)}"),
        ("sampler", cfg["sampler"]["name"] in SAMPLERS, f"allowed: {', '.join(SAMPLERS)}"),
        ("sampler.interval_s", cfg["sampler"]["interval_s"] > 0, "must be > 0"),
        ("sampler.interval_s", cfg["sampler"]["name"] == "none" or cfg["sampler"]["interval_s"] <= 0.1,
         "must be <= 0.1 (instant power is sampled at >= 10 Hz)"),
        ("gpu.memory_gib", cfg["gpu"]["memory_gib"] > 0, "must be > 0"),
    ]
    wl = cfg["workload"]
    if wl["arrival"] in ("poisson", "constant", "gamma"):
        checks += [
            ("workload.rate_rps", wl["rate_rps"] > 0 and math.isfinite(wl["rate_rps"]), "must be > 0"),
            ("workload.duration_s", wl["duration_s"] > 0, "must be > 0"),
            ("workload.gamma_shape", wl["gamma_shape"] > 0, "must be > 0"),
        ]
    if wl.get("exact_count"):
        checks += [("workload.exact_count", wl["arrival"] == "poisson", "applies to arrival=poisson only"),
                   ("workload.exact_count", round(wl["rate_rps"] * wl["duration_s"]) >= 1,
                    "needs rate_rps x duration_s >= 1 request")]
    if wl["arrival"] == "closed":
        checks += [("workload.concurrency", wl["concurrency"] >= 1, "must be >= 1"),
                   ("workload.duration_s", wl["duration_s"] > 0, "must be > 0")]
    if wl["arrival"] == "offline":
        checks += [("workload.num_batches", wl["num_batches"] >= 1, "must be >= 1")]
    checks.append(("workload.warmup_requests", wl["warmup_requests"] >= 0, "must be >= 0"))
    for side in ("input", "output"):
        d = wl[side]
        checks += [
            (f"workload.{side}.dist", d["dist"] in LENGTH_DISTS, f"allowed: {', '.join(LENGTH_DISTS)}"),
            (f"workload.{side}.mean_tokens", d["mean_tokens"] >= 1, "must be >= 1"),
            (f"workload.{side}.min_tokens", 1 <= d["min_tokens"] <= d["max_tokens"], "must be 1 <= min <= max"),
        ]
    for key, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{key}={_lookup(cfg, key)}: {allowed}")


def _lookup(cfg: Mapping, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node.get("name") if isinstance(node, Mapping) else node


# --------------------------------------------------------------------------- cells


def canonical(cfg: Mapping, repeat: int) -> Dict:
    """The part of a config that defines a measurement (what ``cell_id`` hashes).

    A model that pins its checkpoint's quantization (``llama2_7b_awq``) replaces the quantization
    axis with it."""
    quant = cfg["quantization"]
    pinned = cfg["model"].get("quantization")
    if pinned and pinned != quant["name"]:
        quant = _option_node("quantization", pinned)
    return {
        "model": cfg["model"],
        "quantization": quant,
        "gpu": cfg["gpu"],
        "batch_size": int(cfg["batch_size"]),
        "workload": cfg["workload"],
        "engine": cfg["engine"],
        "sampler": cfg["sampler"],
        "repeat": repeat,
    }


def cell_id_of(canon: Mapping) -> str:
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prelaunch_status(canon: Mapping) -> Tuple[Optional[str], str]:
    """(status, reason) for a cell that must not launch, else (None, "")."""
    from orchestrator.analysis.vram import vram_budget

    q, gpu, eng, wl = canon["quantization"], canon["gpu"], canon["engine"], canon["workload"]
    if gpu["compute_capability"] < q["min_compute_capability"]:
        return "unsupported", (
            f"{q['name']} needs compute capability >= {q['min_compute_capability']}, "
            f"{gpu['name']} has {gpu['compute_capability']}"
        )
    for engine in (["vllm", "simulated"] if eng["name"] == "auto" else [eng["name"]]):
        if q["name"] not in eng["supported_quantizations"].get(engine, []):
            return "unsupported", f"engine {engine} does not run quantization {q['name']}"
    if eng["name"] == "hf" and wl["arrival"] != "offline":
        return "unsupported", "engine hf runs static batches only (workload.arrival=offline)"
    context = wl["input"]["mean_tokens"] + wl["output"]["mean_tokens"]
    budget = vram_budget(canon["model"], q, gpu, canon["batch_size"], context,
                         eng["vllm"]["gpu_memory_utilization"])
    if not budget.fits:
        return "infeasible", (
            f"needs {budget.total_gib:.1f} GiB (weights {budget.weights_gib:.1f} + KV "
            f"{budget.kv_gib:.1f} + activations {budget.activations_gib:.1f} + overhead "
            f"{budget.overhead_gib:.1f}) > {budget.capacity_gib:.1f} GiB usable on {gpu['name']}; "
            f"largest batch that fits: {budget.max_batch}"
        )
    return None, ""


def cells_from_configs(configs: Iterable[Mapping]) -> List[Cell]:
    """Validated, de-duplicated cells (``repeats`` of each config), in first-seen order."""
    cells: Dict[str, Cell] = {}
    status_cache: Dict[tuple, Tuple[Optional[str], str]] = {}  # keyed by the (cached) group dicts
    for cfg in configs:
        validate(cfg)
        for repeat in range(int(cfg.get("repeats", 1))):
            canon = canonical(cfg, repeat)
            cid = cell_id_of(canon)
            if cid in cells:
                continue
            key = tuple(id(canon[g]) for g in CONFIG_GROUPS) + (canon["batch_size"],)
            if key not in status_cache:
                status_cache[key] = prelaunch_status(canon)
            status, reason = status_cache[key]
            cells[cid] = Cell(cell_id=cid, config=canon, status=status, reason=reason)
    if not cells:
        raise ConfigError("the sweep expands to zero cells; give at least one value per axis")
    return list(cells.values())


def expand(base: Mapping, base_choices: Mapping[str, str], job_overrides: Sequence[Sequence[str]]) -> List[Cell]:
    """All cells of a sweep: one config per job (see module doc), then ``cells_from_configs``."""
    return cells_from_configs(job_config(base, base_choices, job) for job in job_overrides)
