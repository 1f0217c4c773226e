"""Checks the command line before Hydra composes anything: an unknown group option or key gets
one line naming the key and the allowed values, and exit code 2 (Hydra's own messages span
several lines)."""
from __future__ import annotations

import dataclasses
import sys
import typing
from typing import List, Optional

from orchestrator.config import CONFIG_GROUPS, GROUP_SCHEMAS, Config
from orchestrator.errors import ConfigError
from orchestrator.grid import CONF_DIR, available_options


def _fields(schema) -> dict:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _check_key(path: List[str], schema, full: str):
    """The type of the leaf at ``path`` below ``schema`` (None for free-form mappings)."""
    node = schema
    for i, part in enumerate(path):
        if not dataclasses.is_dataclass(node):
            origin = typing.get_origin(node)
            if origin in (dict, typing.Dict) or node is dict:
                return None  # free-form mapping (e.g. engine.vllm.extra_args)
            raise ConfigError(f"{full}: '{'.'.join(path[:i])}' has no sub-keys")
        fields = _fields(node)
        if part not in fields:
            raise ConfigError(f"{full}: unknown key '{part}'; allowed: {', '.join(sorted(fields))}")
        node = fields[part]
        if typing.get_origin(node) is typing.Union:
            node = next(a for a in typing.get_args(node) if a is not type(None))
    return node


def _check_type(key: str, leaf, values) -> None:
    allowed = {int: (int,), float: (int, float), bool: (bool,), str: (str, int, float, bool)}.get(leaf)
    if allowed is None:
        return
    for v in values:
        if v is None or (isinstance(v, bool) and leaf in (int, float)) or not isinstance(v, allowed):
            raise ConfigError(f"{key}={v}: expected {leaf.__name__}")


def check_override(text: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    ov = OverridesParser.create().parse_override(text)
    key = ov.get_key_element().lstrip("+~")
    head = key.split(".")[0].split("@")[0]
    if head in ("hydra",) or "/" in key:
        return
    if head in CONFIG_GROUPS + ("sweep",) and "." not in key:
        values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]
        allowed = available_options(head, CONF_DIR)
        for v in values:
            if v not in allowed:
                raise ConfigError(f"{head}={v}: unknown option; allowed: {', '.join(allowed)}")
        return
    parts = key.split(".")
    if head in CONFIG_GROUPS:
        leaf = _check_key(parts[1:], GROUP_SCHEMAS[head], text)
    else:
        leaf = _check_key(parts, Config, text)
    values = list(ov.sweep_iterator()) if ov.is_sweep_override() else [ov.value()]
    _check_type(key, leaf, values)


def check_argv(argv: Optional[List[str]] = None) -> None:
    """Validate the ``key=value`` arguments; on error print one line and exit 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        for a in args:
            if "=" in a and not a.startswith("-"):
                check_override(a)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # a malformed override: let the one line say so
        print(f"error: cannot parse overrides: {str(exc).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
