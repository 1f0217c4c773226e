"""The command line's own checks, before Hydra composes anything: each ``key=value`` argument
is checked against the schemas (``config.overrides``); a bad one prints one ``error:`` line and
exits with code 2 (Hydra's own messages span several lines)."""
from __future__ import annotations

import sys
from typing import List, NoReturn, Optional

from orchestrator.driver.outcome import EXIT_BAD_INPUT
from orchestrator.driver.overrides import check_override
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


def check_argv(argv: Optional[List[str]] = None) -> None:
    """Validate the ``key=value`` arguments; on error print one line and exit 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        for a in args:
            if "=" in a and not a.startswith("-"):
                check_override(a)
    except ConfigError as exc:
        fail(exc)
    except Exception as exc:  # a malformed override: let the one line say so
        fail(ConfigError(f"cannot parse overrides: {str(exc).splitlines()[0]}"))
