"""Field helpers shared by every config schema: declared identity, checks, typed loading.

``setting(default)`` marks a field that does **not** define a measurement (timeouts, cache
directories, pacing, log settings): ``identity_of`` leaves it out, so changing it re-runs nothing.
``added(default)`` marks an option added after cells were measured whose default reproduces what
they measured: it joins a cell's identity only when set to another value, so adding it re-runs
nothing and every stored cell keeps its id. Every other field is part of a cell's identity
(``orchestrator.core.identity``).
"""
from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Dict, Iterable, Mapping, Type, TypeVar

from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")
IDENTITY = "identity"
ADDED = "added"  # in the identity only when not at its default
CHOSEN_BY = "chosen_by"  # (selector field, value): in the identity only while the selector has that value


def setting(default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING):
    """A dataclass field that is not part of a cell's identity (see module doc)."""
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={IDENTITY: False})
    return dataclasses.field(default=default, metadata={IDENTITY: False})


def added(default):
    """A field in a cell's identity only when it differs from ``default`` (see module doc)."""
    return dataclasses.field(default=default, metadata={ADDED: True})


def chosen_by(selector: str, value: Enum, default_factory):
    """A plug-in's options block, in a cell's identity only while the field ``selector`` of the
    same object is ``value`` (the workload source's block: another source's knobs never change a
    cell's id)."""
    return dataclasses.field(default_factory=default_factory, metadata={CHOSEN_BY: (selector, value)})


def _in_identity(obj, f) -> bool:
    if not f.metadata.get(IDENTITY, True):
        return False
    if f.metadata.get(ADDED) and getattr(obj, f.name) == f.default:
        return False
    chooser = f.metadata.get(CHOSEN_BY)
    return chooser is None or getattr(obj, chooser[0]) == chooser[1]


def identity_of(obj) -> Any:
    """The identity fields of a config object as plain JSON values (enums as their values,
    nested schemas recursively, non-identity fields left out)."""
    return _plain(obj, identity_only=True)


def as_plain(obj) -> Any:
    """Every field (identity or not) as plain JSON values: what ``config_json`` stores."""
    return _plain(obj, identity_only=False)


def _plain(obj, identity_only: bool) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name), identity_only) for f in dataclasses.fields(obj)
                if not identity_only or _in_identity(obj, f)}
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, identity_only) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, identity_only) for v in obj]
    return obj


@lru_cache(maxsize=None)
def field_types(cls: type) -> Dict[str, Any]:
    """name -> resolved type of a dataclass's fields (``Optional[X]`` unwrapped to ``X``)."""
    hints = typing.get_type_hints(cls)
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if typing.get_origin(t) is typing.Union:
            t = next(a for a in typing.get_args(t) if a is not type(None))
        out[f.name] = t
    return out


def from_dict(cls: Type[D], data: Mapping) -> D:
    """A schema object from a plain mapping (stored ``config_json``): unknown keys are dropped
    (older stores carry fields that no longer exist), missing ones take their defaults, enums
    and nested schemas are rebuilt."""
    types = field_types(cls)
    kwargs = {}
    for name, t in types.items():
        if name not in data:
            continue
        kwargs[name] = _convert(t, data[name])
    return cls(**kwargs)


def _convert(t, value):
    if value is None:
        return None
    if dataclasses.is_dataclass(t) and isinstance(value, Mapping):
        return from_dict(t, value)
    if isinstance(t, type) and issubclass(t, Enum):
        return t(value)
    return value


def check(key: str, value, ok: bool, allowed: str) -> None:
    """Raise ``ConfigError('<key>=<value>: <allowed>')`` unless ``ok``."""
    if not ok:
        shown = value.value if isinstance(value, Enum) else value
        raise ConfigError(f"{key}={shown}: {allowed}")


def choice(key: str, value: str, options: Iterable[str]) -> None:
    """``value`` must be one of ``options`` (a registry's names)."""
    opts = sorted(options)
    check(key, value, value in opts, f"allowed: {', '.join(opts)}")
