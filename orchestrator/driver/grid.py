"""Config -> cells (pure). One mechanism for ``+sweep=NAME`` and ``-m key=a,b``.

Hydra's sweeper turns the sweep's axes into one list of override strings per job; ``expand``
turns each list into a typed ``CellConfig`` without composing it through Hydra again (one
compose per job would cost ~20 ms; a 10,000-cell grid must expand in under 2 s). Each group
option file is read once, merged into its schema (types and choices checked), turned into its
dataclass and cached; value overrides (``workload.duration_s=10``) are applied on top and
re-checked. ``tests/unit/driver/test_grid.py`` checks the result equals a real Hydra compose.

``cells`` then gives every cell config its engine (``engine=auto``: per GPU type as the driver
probed the cluster, per cell the first usable engine that does not refuse it), its identity and ``cell_id`` (``orchestrator.core.identity``) and, for a cell that
must not launch, its pre-launch status (``unsupported``: compute capability, or an engine that
does not run the quantization or workload kind; ``infeasible``: the VRAM budget).
"""
from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from orchestrator.config.engine import AUTO
from orchestrator.config.fields import choice, field_types
from orchestrator.config.groups import WorkloadConfig
from orchestrator.config.root import CONFIG_GROUPS, GROUP_SCHEMAS, CellConfig, Config
from orchestrator.core.cell import Cell, EngineChoice
from orchestrator.core.identity import IdentityCache, cell_identity, digest
from orchestrator.driver.overrides import (
    CONF_DIR,
    available_options,
    check_values,
    override_head,
    override_key,
    parse_override,
    value_text,
)
from orchestrator.energy import SAMPLERS
from orchestrator.engines import ENGINES, engine_for, runs_kinds
from orchestrator.errors import ConfigError, Status
from orchestrator.perf.vram import min_gpus, vram_budget

IGNORED_GROUPS = ("sweep", "hydra")


# --------------------------------------------------------------------------- group options


@lru_cache(maxsize=None)
def _option_node(group: str, option: str):
    """The option's YAML merged into its schema (a DictConfig; types and choices checked)."""
    from omegaconf import OmegaConf

    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file():
        allowed = ", ".join(available_options(group))
        raise ConfigError(f"{group}={option}: unknown option; allowed: {allowed}")
    return OmegaConf.merge(OmegaConf.structured(GROUP_SCHEMAS[group]), OmegaConf.load(path))


@lru_cache(maxsize=None)
def group_option(group: str, option: str, overrides: Tuple[Tuple[str, str], ...] = ()):
    """The typed object of a group option with value overrides (dotted key below the group, raw
    string value) applied through the schema, so a wrong key or type fails with the key's name.
    Cached: callers share the object and never mutate it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    conf = _option_node(group, option)
    if overrides:
        conf = conf.copy()
    for key, value in overrides:
        try:
            OmegaConf.update(conf, key, _parse_value(value), merge=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{group}.{key}={value}: {str(exc).splitlines()[0]}") from None
    try:
        return OmegaConf.to_object(conf)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{group}={option}: {str(exc).splitlines()[0]}") from None


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
        ov = parse_override(text)
        key, head = override_key(ov), override_head(ov)
        if head in IGNORED_GROUPS:
            continue
        if ov.is_delete() or ov.is_add() or ov.is_force_add():
            raise ConfigError(f"{text}: only plain 'key=value' overrides can be swept")
        value = value_text(ov)
        if head in CONFIG_GROUPS and "." not in key:
            choices[head] = value
        elif head in CONFIG_GROUPS:
            values.setdefault(head, []).append((key.split(".", 1)[1], value))
        else:
            top[key] = value
    return choices, {g: tuple(v) for g, v in values.items()}, top


def job_config(base: Config, base_choices: Mapping[str, str], override_texts: Sequence[str]) -> Config:
    """The typed config of one sweeper job: ``base`` with the job's overrides (shared group
    objects: never mutate one)."""
    choices, values, top = _split(override_texts)
    groups = {g: group_option(g, str(choices.get(g, base_choices[g])), values.get(g, ())) for g in CONFIG_GROUPS}
    cfg = dataclasses.replace(base, **groups)
    for key, value in top.items():
        cfg = _replace_path(cfg, key.split("."), key, value)
    return cfg


def _replace_path(obj, parts: List[str], key: str, value: str):
    """A copy of ``obj`` with the field at ``parts`` set to ``value`` (type-checked)."""
    cls: type = type(obj)
    types = field_types(cls) if dataclasses.is_dataclass(cls) else {}
    if parts[0] not in types:
        raise ConfigError(f"{key}={value}: unknown key '{parts[0]}'")
    if len(parts) > 1:
        return dataclasses.replace(obj, **{parts[0]: _replace_path(getattr(obj, parts[0]), parts[1:], key, value)})
    new = _parse_value(value)
    check_values(key, types[parts[0]], [new])
    if types[parts[0]] is float and isinstance(new, int):
        new = float(new)
    return dataclasses.replace(obj, **{parts[0]: new})


# --------------------------------------------------------------------------- cell configs


def check_plugins(cfg: Config) -> None:
    """The engine and sampler a config names are registered (or ``auto``): one ``ConfigError`` line."""
    choice("engine", cfg.engine.name, (AUTO, *ENGINES.names()))
    choice("sampler", cfg.sampler.name, (AUTO, *SAMPLERS.names()))



def traffic_files(workload: WorkloadConfig) -> WorkloadConfig:
    """The workload with the trace or dataset it names resolved to an absolute path and
    identified by its content (``sha256``), after reading it cleanly (a ``TraceFileError`` line
    names the file, the line and what is wrong), before anything runs."""
    from orchestrator.config.workload_sources import Source
    from orchestrator.workloads.context import file_sha256, load_dataset, load_trace

    def resolved(path: str) -> Tuple[str, str]:
        full = str(Path(path).expanduser().resolve())
        return full, file_sha256(full)

    if workload.source is Source.trace:
        path, digest = resolved(workload.trace.path)
        rows = load_trace(path, workload.trace.format)
        trace = dataclasses.replace(workload.trace, path=path, sha256=digest,
                                    mean_input_tokens=sum(r.input_tokens for r in rows) / len(rows),
                                    mean_output_tokens=sum(r.output_tokens for r in rows) / len(rows))
        return dataclasses.replace(workload, trace=trace)
    if workload.source is Source.dataset:
        path, digest = resolved(workload.dataset.path)
        load_dataset(path, workload.dataset.format)
        return dataclasses.replace(workload, dataset=dataclasses.replace(workload.dataset, path=path, sha256=digest))
    if workload.source is Source.sessions and workload.sessions.dataset:
        path, digest = resolved(workload.sessions.dataset)
        load_dataset(path)
        return dataclasses.replace(workload, sessions=dataclasses.replace(workload.sessions, dataset=path,
                                                                             dataset_sha256=digest))
    return workload


def cell_configs(configs: Iterable[Config]) -> List[CellConfig]:
    """Validated cell configs (``repeats`` of each config), in order. A model that pins its
    checkpoint's quantization (``llama2_7b_awq``) replaces the quantization axis with it."""
    out: List[CellConfig] = []
    checked: Dict[int, object] = {}
    workloads: Dict[int, Tuple[WorkloadConfig, WorkloadConfig]] = {}  # id -> (as given, resolved)
    for cfg in configs:
        check_plugins(cfg)
        cfg.validate(checked)
        if id(cfg.workload) not in workloads:
            workloads[id(cfg.workload)] = (cfg.workload, traffic_files(cfg.workload))
        workload = workloads[id(cfg.workload)][1]
        quant = cfg.quantization
        if cfg.model.quantization and cfg.model.quantization != quant.name:
            quant = group_option("quantization", cfg.model.quantization)
        for repeat in range(int(cfg.repeats)):
            out.append(CellConfig(model=cfg.model, quantization=quant, gpu=cfg.gpu, workload=workload,
                                  engine=cfg.engine, sampler=cfg.sampler, batch_size=int(cfg.batch_size),
                                  repeat=repeat, tensor_parallel_size=int(cfg.tensor_parallel_size)))
    if not out:
        raise ConfigError("the sweep expands to zero cells; give at least one value per axis")
    return out


def expand(base: Config, base_choices: Mapping[str, str], job_overrides: Sequence[Sequence[str]]) -> List[CellConfig]:
    """Every cell config of a sweep: one config per job (see module doc), then ``repeats``."""
    return cell_configs(job_config(base, base_choices, job) for job in job_overrides)


@lru_cache(maxsize=1)
def default_choices() -> Dict[str, str]:
    """The group options ``conf/config.yaml`` picks by default."""
    import yaml

    doc = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    out = {}
    for entry in doc.get("defaults", []):
        if isinstance(entry, dict):
            (key, value), = entry.items()
            if key in CONFIG_GROUPS:
                out[key] = str(value)
    return out


def config_of(overrides: Sequence[str] = ()) -> CellConfig:
    """The cell config of ``key=value`` overrides over ``conf/config.yaml``'s defaults, through
    the same path as a sweep's jobs, without Hydra (scripts and tests); ``repeat=N`` sets the
    repeat index."""
    texts = [o for o in overrides if not o.startswith("repeat=")]
    repeat = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("repeat=")), 0)
    cfg = job_config(Config(), default_choices(), texts)
    return dataclasses.replace(cell_configs([cfg])[0], repeat=repeat)


def needs_auto(configs: Iterable[CellConfig]) -> List[str]:
    """The accelerator types of the cells that asked for ``engine=auto`` (sorted)."""
    return sorted({c.gpu.accelerator_type for c in configs if c.engine.name == AUTO})


# --------------------------------------------------------------------------- cells


def cells(configs: Iterable[CellConfig], auto: Mapping[str, EngineChoice]) -> List[Cell]:
    """Cells with their engine (``auto`` from ``auto[accelerator_type]``: see ``auto_engine``), id
    and pre-launch status; de-duplicated by id, in first-seen order."""
    out: Dict[str, Cell] = {}
    ids = IdentityCache()
    status_cache: Dict[tuple, Tuple[Optional[Status], str]] = {}

    def status_of(cfg: CellConfig, name: str) -> Tuple[Optional[Status], str]:
        key = (id(cfg.model), id(cfg.quantization), id(cfg.gpu), id(cfg.workload), id(cfg.engine), cfg.batch_size,
               cfg.tensor_parallel_size, name)
        if key not in status_cache:
            status_cache[key] = prelaunch_status(cfg, name)
        return status_cache[key]

    for cfg in configs:
        name, why = cfg.engine.name, ""
        if name == AUTO:
            name, why = auto_engine(auto[cfg.gpu.accelerator_type], lambda n: status_of(cfg, n))
        cid = digest(cell_identity(cfg, name, ids))
        if cid in out:
            continue
        status, reason = status_of(cfg, name)
        out[cid] = Cell(cell_id=cid, config=cfg, engine=name, engine_reason=why, status=status, reason=reason)
    return list(out.values())


def auto_engine(choice: EngineChoice,
                status_of: Callable[[str], Tuple[Optional[Status], str]]) -> Tuple[str, str]:
    """(engine, why) of an ``engine=auto`` cell: ``choice``'s engine, else the first of its
    ``fallbacks`` that does not refuse the cell (``unsupported``) before launch; when all refuse
    it, ``choice``'s engine (its refusal is the cell's reason)."""
    refusals: List[str] = []
    for option in (choice, *choice.fallbacks):
        status, reason = status_of(option.engine)
        if status is not Status.unsupported:
            return option.engine, "; ".join([*refusals, option.reason])
        refusals.append(f"{option.engine} refuses it: {_clause(reason)}")
    return choice.engine, choice.reason


def _clause(text: str, limit: int = 80) -> str:
    """The first clause of a reason (up to ``:`` or ``;``), at most ``limit`` characters."""
    head = text.split(";", 1)[0].split(":", 1)[0].strip()
    return head if len(head) <= limit else head[: limit - 1] + "…"


def prelaunch_status(cfg: CellConfig, engine: str) -> Tuple[Optional[Status], str]:
    """(status, reason) for a cell that must not launch on ``engine``, else (None, "")."""
    q, gpu, wl = cfg.quantization, cfg.gpu, cfg.workload
    if gpu.compute_capability < q.min_compute_capability:
        return Status.unsupported, (f"{q.name} needs compute capability >= {q.min_compute_capability}, "
                                    f"{gpu.name} has {gpu.compute_capability}")
    cls = engine_for(engine, wl.kind)
    if cls is None:
        kinds = ", ".join(k.value for k in runs_kinds(engine))
        what = "static batches only" if kinds == "offline" else f"{kinds} workloads only"
        return Status.unsupported, f"engine {engine} runs {what} (workload.arrival={wl.arrival.value})"
    if q.name not in cls.quantizations:
        return Status.unsupported, cls.quantization_refusal(q.name)
    refusal = cls.option_refusal(cfg)
    if refusal:
        return Status.unsupported, refusal
    tp = int(cfg.tensor_parallel_size)
    if tp > 1 and not cls.tensor_parallel:
        return Status.unsupported, (f"engine {engine} runs a cell on one GPU (tensor_parallel_size={tp}); "
                                    "engine=vllm spans several")
    if not cls.hosts_model:
        return None, ""
    context = int(round(sum(wl.mean_lengths())))
    fraction = cfg.engine.options(engine).memory_fraction()
    budget = vram_budget(cfg.model, q, gpu, cfg.batch_size, context, fraction, gpus=tp)
    if not budget.fits:
        need = min_gpus(cfg.model, q, gpu, cfg.batch_size, context, fraction)
        hint = (f"; it fits with tensor_parallel_size >= {need}" if need is not None and need > tp else "")
        per = f" per GPU of {tp}" if tp > 1 else ""
        return Status.infeasible, (
            f"needs {budget.total_gib:.1f} GiB{per} (weights {budget.weights_gib:.1f} + KV "
            f"{budget.kv_gib:.1f} + activations {budget.activations_gib:.1f} + overhead "
            f"{budget.overhead_gib:.1f}) > {budget.capacity_gib:.1f} GiB usable on {gpu.name}; "
            f"largest batch that fits: {budget.max_batch}{hint}"
        )
    return None, ""
