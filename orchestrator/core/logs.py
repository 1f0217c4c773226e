"""The package's log level, the same on the driver and on every worker (``log_level=DEBUG`` or the
environment variable ``ORCHESTRATOR_LOG_LEVEL``; a ``UnitSpec`` carries it to the worker)."""
from __future__ import annotations

import logging

PACKAGE_LOGGER = "orchestrator"


def set_log_level(level: str) -> None:
    """The package's loggers at ``level`` (DEBUG | INFO | WARNING | ERROR). A process without a
    handler (a Ray worker) gets one writing ``name: message`` to stderr at that level, which Ray
    forwards to the driver's console."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(name)s: %(message)s")
    logging.getLogger(PACKAGE_LOGGER).setLevel(level)
