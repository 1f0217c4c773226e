"""A series' label: ``model/quantization/gpu``, plus, where several variants of one group ran
(other engine options, another engine), what tells each apart (`` [enforce_eager=true]``, at most
``MAX_LABEL_OPTIONS`` options, the variant's digest where they do not suffice); see
``analysis.dataset``'s module doc for what a variant is."""
from __future__ import annotations

import json

import pandas as pd

from orchestrator.config.engine import EngineConfig
from orchestrator.config.fields import ADDED
from orchestrator.config.root import CellConfig


def flat_identity(tree: dict, prefix: str = "") -> dict[str, str]:
    """Dotted path -> canonical JSON of each leaf of a nested identity."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_identity(value, path + "."))
        else:
            out[path] = json.dumps(value, sort_keys=True, default=str)
    return out


MAX_LABEL_OPTIONS = 3
"""Options named in a series label; more are cut, and the variant's digest keeps it unique."""


def series_suffix(series: str, model: str, quantization: str, gpu: str) -> str:
    """What a series label adds to ``model/quantization/gpu`` (`` [enforce_eager=true]``, or '');
    a label of another form is its own suffix (nothing is dropped)."""
    base = f"{model}/{quantization}/{gpu}"
    return series[len(base):] if series.startswith(base) else f" {series}"


def series_suffixes(frame: pd.DataFrame) -> pd.Series:
    """``series_suffix`` of every row of ``frame`` (its series, model, quantization and gpu columns)."""
    columns = (frame[c].astype(str) for c in ("series", "model", "quantization", "gpu"))
    return pd.Series([series_suffix(*vals) for vals in zip(*columns)], index=frame.index, dtype=object)


def series_labels(df: pd.DataFrame, flats: list[dict[str, str]]) -> list[str]:
    base = (df["model"].astype(str) + "/" + df["quantization"].astype(str) + "/" + df["gpu"].astype(str)).tolist()
    labels = list(base)
    engines, variants = df["engine"].astype(str).tolist(), df["variant"].tolist()
    keys = [v or f"-{e}" for v, e in zip(variants, engines)]  # no stored config: one variant per engine
    for idx in df.groupby([pd.Series(base, index=df.index), df["workload"]], sort=False, dropna=False).indices.values():
        seen: dict[str, tuple[str, dict[str, str]]] = {}
        for i in idx:
            seen.setdefault(keys[i], (engines[i], flats[i]))
        if len(seen) > 1:
            suffix = _variant_suffixes(seen)
            for i in idx:
                labels[i] = f"{base[i]} [{suffix[keys[i]]}]"
    return labels


def _variant_suffixes(variants: dict[str, tuple[str, dict[str, str]]]) -> dict[str, str]:
    """Variant digest (``-engine`` for rows without a stored config) -> what tells it apart from
    the others of its group (see module doc)."""
    several_engines = len({engine for engine, _ in variants.values()}) > 1
    out = {}
    for variant, (engine, flat) in variants.items():
        if variant.startswith("-"):  # a row without a stored config: nothing to name
            out[variant] = f"{engine}, no stored config" if several_engines else "no stored config"
            continue
        peers = [f for v, (e, f) in variants.items() if e == engine and not v.startswith("-")]
        differing = [k for k in sorted(set().union(*peers)) if k != "engine.name"
                     and len({p.get(k, added_default(k)) for p in peers}) > 1
                     and (k in flat or added_default(k) is not None)]
        parts = [engine] if several_engines else []
        parts += [option_text(k, flat.get(k, added_default(k))) for k in differing[:MAX_LABEL_OPTIONS]]
        if len(differing) > MAX_LABEL_OPTIONS or not parts:
            parts.append(f"…#{variant}" if parts else f"#{variant}")
        out[variant] = ", ".join(parts)
    if len(set(out.values())) < len(out):  # e.g. an option present in one variant only
        out = {v: f"{s}, #{v}" for v, s in out.items()}
    return out


def added_default(path: str) -> str | None:
    """The default of an engine option an identity leaves out at its default (``added``), as the
    canonical JSON ``flat_identity`` writes (``engine.vllm.api`` -> ``"completions"``), and of a
    cell's own ``added`` axis (``tensor_parallel_size`` -> ``1``); None for any other path."""
    if "." not in path:  # a cell's own axis added after cells were stored (e.g. tensor_parallel_size)
        field = CellConfig.__dataclass_fields__.get(path)
        return json.dumps(field.default) if field is not None and field.metadata.get(ADDED) else None
    parts = path.split(".")
    if len(parts) != 3 or parts[0] != "engine":
        return None
    block = EngineConfig().options(parts[1])
    if not hasattr(block, parts[2]):
        return None
    value = getattr(block, parts[2])
    return json.dumps(getattr(value, "value", value), sort_keys=True, default=str)


def option_text(path: str, value_json: str | None) -> str:
    """``name=value`` of one option of a flat identity (``enforce_eager=true``; ``=unset`` for None)."""
    if value_json is None:
        return f"{path.rsplit('.', 1)[-1]}=unset"
    value = json.loads(value_json)
    return f"{path.rsplit('.', 1)[-1]}={value if isinstance(value, str) else json.dumps(value)}"
