"""Command-line overrides: the one parser of their text (Hydra's grammar; the key without its
``+``/``~``/``++`` prefix, the group it belongs to, the value as the user wrote it), and the
checks against the schemas before Hydra composes anything: an unknown group option, key, type or
choice gets one line naming the key and what is allowed (Hydra's own messages span several
lines)."""
from __future__ import annotations

import dataclasses
import re
import typing
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, List

from orchestrator.config.fields import field_types
from orchestrator.config.root import CONFIG_GROUPS, GROUP_SCHEMAS, Config
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf"
_ESCAPED = re.compile(r"\\([\\()\[\]{}:=, \t])")


@lru_cache(maxsize=None)
def parse_override(text: str) -> "Override":
    """``text`` (``key=value``, ``+key=value``, ``key=a,b``...) parsed by Hydra's grammar (cached)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(text)


def override_key(override: "Override | str") -> str:
    """The dotted key of an override (parsed, or its text), without ``+``, ``++`` or ``~``."""
    ov = parse_override(override) if isinstance(override, str) else override
    return ov.get_key_element().lstrip("+~")


def override_head(override: "Override | str") -> str:
    """The key's first part without a package (``@``): the config group or top-level key it sets."""
    return override_key(override).split(".")[0].split("@")[0]


def value_text(override: "Override") -> str:
    """The value as the user wrote it: Hydra's ``get_value_element_as_str`` escapes the grammar's
    special characters (``http\\://host\\:8000``)."""
    return _ESCAPED.sub(r"\1", override.get_value_element_as_str())


def available_options(group: str, conf_dir: Path = CONF_DIR) -> List[str]:
    """The option files of a config group, sorted."""
    opts = [p.stem for p in (conf_dir / group).glob("*.yaml")]
    return sorted(opts, key=lambda o: (not o.isdigit(), int(o) if o.isdigit() else 0, o))


def leaf_type(path: List[str], schema, full: str):
    """The type of the leaf at ``path`` below ``schema`` (None for free-form mappings)."""
    node = schema
    for i, part in enumerate(path):
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            if typing.get_origin(node) in (dict, typing.Dict) or node is dict:
                return None  # free-form mapping (e.g. engine.vllm.extra_args)
            raise ConfigError(f"{full}: '{'.'.join(path[:i])}' has no sub-keys")
        types = field_types(node)
        if part not in types:
            raise ConfigError(f"{full}: unknown key '{part}'; allowed: {', '.join(sorted(types))}")
        node = types[part]
    return node


def check_values(key: str, leaf, values) -> None:
    """Each value must fit the leaf's type (enums: one of their names)."""
    if isinstance(leaf, type) and issubclass(leaf, Enum):
        names = [m.name for m in leaf]
        for v in values:
            if str(v) not in names:
                raise ConfigError(f"{key}={v}: allowed: {', '.join(names)}")
        return
    allowed = {int: (int,), float: (int, float), bool: (bool,), str: (str, int, float, bool)}.get(leaf)
    if allowed is None:
        return
    for v in values:
        if v is None or (isinstance(v, bool) and leaf in (int, float)) or not isinstance(v, allowed):
            raise ConfigError(f"{key}={v}: expected {leaf.__name__}")


def check_override(text: str) -> None:
    """One ``key=value`` (or ``key=a,b`` sweep) override; ``ConfigError`` on a bad one."""
    ov = parse_override(text)
    key, head = override_key(ov), override_head(ov)
    if head == "hydra" or "/" in key:
        return
    if head in CONFIG_GROUPS + ("sweep", "search") and "." not in key:
        values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]
        allowed = available_options(head)
        for v in values:
            if v not in allowed:
                raise ConfigError(f"{head}={v}: unknown option; allowed: {', '.join(allowed)}")
        return
    parts = key.split(".")
    if head in CONFIG_GROUPS:
        leaf = leaf_type(parts[1:], GROUP_SCHEMAS[head], text)
    else:
        leaf = leaf_type(parts, Config, text)
    parsed = list(ov.sweep_iterator()) if ov.is_sweep_override() else [ov.value()]
    check_values(key, leaf, parsed)
