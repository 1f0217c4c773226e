"""How the report names a workload: with its traffic's source (``workload_source``: dataset,
trace or sessions) where it is not synthetic, e.g. ``mooncake_sample (source: trace)``, or
``mooncake_sample; source: trace`` inside parentheses (``aside``); a synthetic workload (or a row
from a store without the column) is named as it is."""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from orchestrator.config.workload_sources import Source
from orchestrator.store.schema import WORKLOAD_SOURCE


def workload_name(workload: str, source: object, aside: bool = False) -> str:
    """``workload`` with `` (source: <source>)`` (``aside``: ``; source: <source>``) where
    ``source`` is a source other than synthetic."""
    if not isinstance(source, str) or not source or source == Source.synthetic.value:
        return str(workload)
    return f"{workload}; source: {source}" if aside else f"{workload} (source: {source})"


def workload_names(rows: pd.DataFrame, aside: bool = False) -> dict[str, str]:
    """workload -> its name (``workload_name``) over ``rows`` (runs or points), by the first source
    each workload's rows state."""
    if WORKLOAD_SOURCE not in rows:
        return {str(w): str(w) for w in rows["workload"].unique()}
    stated = rows[["workload", WORKLOAD_SOURCE]].dropna().drop_duplicates("workload")
    sources = dict(zip(stated["workload"].astype(str), stated[WORKLOAD_SOURCE]))
    return {str(w): workload_name(str(w), sources.get(str(w)), aside) for w in rows["workload"].unique()}


def named(workload: str, names: Mapping[str, str]) -> str:
    """The name of ``workload`` in ``names`` (itself when absent)."""
    return names.get(workload, workload)
