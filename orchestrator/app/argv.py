"""The command line's own checks, before Hydra composes anything: each ``key=value`` argument
is checked against the schemas (``config.overrides``); a bad one prints one ``error:`` line and
exits with code 2 (Hydra's own messages span several lines)."""
from __future__ import annotations

import sys
from typing import List, NoReturn, Optional

from orchestrator.driver.outcome import EXIT_BAD_INPUT
from orchestrator.driver.overrides import check_override, override_key, parse_override
from orchestrator.errors import ConfigError


def fail(exc: Exception) -> NoReturn:
    """Print ``error: <one line>`` and exit 2."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    sys.exit(EXIT_BAD_INPUT)


MULTIRUN_FLAGS = ("-m", "--multirun")
PLAN_FLAG = "--plan"


def plan_flag(argv: List[str]) -> List[str]:
    """``argv`` with ``--plan`` as the override ``plan=true`` (show the grid, run nothing)."""
    return [("plan=true" if a == PLAN_FLAG else a) for a in argv]


def hoist_multirun(argv: List[str]) -> List[str]:
    """``argv`` with ``-m`` / ``--multirun`` moved before the overrides (Hydra's parser only
    accepts it there; users put it anywhere: ``engine=vllm -m batch_size=1,8``)."""
    flags = [a for a in argv if a in MULTIRUN_FLAGS]
    return flags[:1] + [a for a in argv if a not in MULTIRUN_FLAGS]


VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir",
               "-cd", "--info", "--experimental-rerun")
"""Hydra's flags whose next argument is their value, not an override."""


def overrides_of(args: List[str]) -> List[str]:
    """The override arguments of ``args`` (flags and their values left out)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in VALUE_FLAGS:
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def check_shape(args: List[str]) -> None:
    """What Hydra would refuse in a traceback: a bare word, a removal (``~key``), several values
    without ``-m``, two sweep files, ``--cfg`` with ``-m``. ``ConfigError`` with one line."""
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    if multirun and any(a in ("--cfg", "-c") for a in args):
        raise ConfigError("--cfg shows one composed config and does not combine with -m; "
                          "--plan shows the cells of a sweep")
    overrides = overrides_of(args)
    for o in overrides:
        if o.startswith("~"):
            raise ConfigError(f"{o}: removing a key or a config group is not supported; set it instead "
                              f"({o.lstrip('~').split('=')[0]}=...)")
        if "=" not in o:
            raise ConfigError(f"{o}: expected key=value (a config group takes an option: {o}=NAME; "
                              "python -m orchestrator --help lists them)")
    sweeps = [o for o in overrides if override_key(o) == "sweep"]
    if len(sweeps) > 1:
        raise ConfigError(f"{' '.join(sweeps)}: one sweep file per command (combine axes with -m key=a,b)")
    multirun_files = [o for o in overrides if override_key(o) in ("sweep", "search")]  # they set hydra.mode
    several = [o for o in overrides if o not in multirun_files and parse_override(o).is_sweep_override()]
    if several and not multirun and not multirun_files:
        raise ConfigError(f"{several[0]}: several values sweep an axis: add -m "
                          f"(python -m orchestrator -m {' '.join(several)})")


def check_argv(argv: Optional[List[str]] = None) -> None:
    """Validate the arguments (shape, then each ``key=value`` against the schemas); on error print
    one line and exit 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        check_shape(args)
        for a in overrides_of(args):
            check_override(a)
    except ConfigError as exc:
        fail(exc)
    except Exception as exc:  # a malformed override: let the one line say so
        fail(ConfigError(f"cannot parse overrides: {str(exc).splitlines()[0]}"))
