"""A sweep's Parquet tables as pandas frames with the derived columns every analysis uses.

``read_sweep(dir)`` -> ``SweepData``: ``runs`` holds every cell (any status) with these extra
columns (units in the names, as in the store):

- ``series``: ``model/quantization/gpu``, and when one such combination ran several variants on
  one workload, what tells them apart in brackets: the engine when the variants ran several, then
  each option whose value differs among the variants of one engine, by its name, e.g.
  ``llama2_7b/awq/h200 [enforce_eager=true]`` or ``mistral_7b/int8/h200 [int8_threshold=6.0]``
  (more than three such options: the first three, then ``…#xxxx``, the variant's digest; two
  variants that would read alike: ``, #xxxx`` appended; a row without a stored config:
  ``[no stored config]``);
  ``variant``: 4 hex digits of the cell's identity (``identity.series_identity``: what defines its
  measurement, for the engine that ran it) without batch size and repeat — cells measured by
  different sweeps, or before an option of another engine existed, are one series when they
  measured the same thing; ``engine_options``: the engine part of that identity alone (its name
  and options: how the cell ran, whatever the model, quantization or workload) as JSON, dotted
  option path -> the value's JSON (``option_text`` shows one);
- ``flags``: the codes of ``FLAGS`` raised for the cell, e.g. ``"S E"`` ("" when none);
- ``simulated``: the row came from the simulated engine or carries modeled power
  (``energy_source == "simulated"``): modeled, never measured;
- ``energy_available``: a valid gross energy exists (``energy_j`` not null, not invalid),
  measured or modeled;
- ``energy_measured``: ``energy_available`` and not ``simulated``: only a real measurement (e.g.
  ``energy_source == "nvml"``) counts as measured;
- ``energy_per_output_token_j`` / ``net_energy_per_output_token_j``: gross / net J per output
  token (the per-1k-token columns ÷ 1000);
- ``context_tokens``: mean context of a decoding sequence (input + output / 2 tokens);
- ``device``: ``"cpu"`` where the engine ran on the CPU (an hf cell on a machine without the
  cell's GPU: ``engine_extra``'s ``device``), else ``"gpu"``; such rows' ``gpu`` reads ``cpu``
  (their config's GPU is not what measured them), so every label, filter and table says so;
- ``batch_knob``: what ``batch_size`` set in the engine that ran the cell: for offline cells the
  size of each static batch (``batch size``) in every engine; otherwise the engine's
  ``EngineOptions.batch_knob`` (``max-num-seqs`` for vLLM's server and the simulator, '' for an
  endpoint, whose server schedules its own batches).

The energy-measurement flags (``MODEL_ENERGY_FLAGS``: short window, energy mismatch, energy
invalid) are cleared for simulated rows: they say nothing about a measurement (since schema 3 the
worker no longer raises ``energy_mismatch`` from a modeled trace; older stores have it). Their
other flags (saturated, token count) stay.

``batch_points(ok)`` folds repeats of one (series, workload, batch size) into one row: latency,
throughput and energy columns are means over repeats, request counts are sums, flags are the
union (text columns such as ``workload_source``: the first cell's); ``n_cells`` says how many cells
each point holds, ``n_repeats`` how many repeats, and ``analysis.repeats`` adds each repeat
metric's Student-t 95% interval and CV.

``baseline_sizes(points, n)``: the batch size each series is compared against: ``n`` where the
series ran it, else NaN; with ``n`` None, each series' smallest ok batch size.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
from pyarrow import fs as pafs

from orchestrator.analysis.repeats import repeat_stats
from orchestrator.analysis.series_labels import flat_identity, series_labels
from orchestrator.config.engine import EngineConfig
from orchestrator.config.fields import as_plain
from orchestrator.config.root import CellConfig, cell_config_from_json
from orchestrator.core.identity import IdentityCache, digest, series_identity
from orchestrator.errors import OrchestratorError
from orchestrator.store import schema as store_schema
from orchestrator.store import sweep_store as store
from orchestrator.store.schema import (
    CLIENT_LAG_P99_MS,
    CLIENT_LAGGING,
    ENERGY_INVALID,
    ENERGY_J,
    ENERGY_MISMATCH,
    ENERGY_SOURCE,
    INPUT_TOKENS_PER_REQUEST_MEAN,
    N_REQUESTS_CANCELLED,
    N_REQUESTS_COMPLETED_IN_WINDOW,
    N_REQUESTS_DRAINED,
    N_REQUESTS_FAILED,
    N_REQUESTS_MEASURED,
    N_REQUESTS_OK,
    N_REQUESTS_TOTAL,
    OUTPUT_THROUGHPUT_TOK_S,
    OUTPUT_TOK_S_PER_GPU,
    OUTPUT_TOKENS_IN_WINDOW,
    OUTPUT_TOKENS_PER_REQUEST_MEAN,
    SATURATED,
    SHORT_WINDOW,
    TENSOR_PARALLEL_SIZE,
    TOKEN_COUNT_MISMATCH,
    WORKLOAD_SOURCE,
)

FLAGS = {
    SATURATED: ("S", "saturated: completions < 95% of the scheduled rate, TTFT grows through the window, "
                       "or requests were cancelled at the drain limit"),
    SHORT_WINDOW: ("W", "short window: shorter than workload.min_window_s or 10 energy-counter updates"),
    ENERGY_MISMATCH: ("E", "energy mismatch: counter and integrated power differ by > 5%"),
    TOKEN_COUNT_MISMATCH: ("T", "token count mismatch: a request returned other than the tokens asked for"),
    ENERGY_INVALID: ("X", "energy invalid: the energy counter went backwards (driver reload)"),
    CLIENT_LAGGING: ("L", f"client lagging: the client sent requests late (send-lag p99 > {CLIENT_LAG_P99_MS:g} ms), "
                          "so TTFT and E2E include its own lateness"),
}
"""Flag column -> (code shown in tables, meaning)."""

MODEL_ENERGY_FLAGS = (SHORT_WINDOW, ENERGY_MISMATCH, ENERGY_INVALID)
"""Flags about the energy measurement itself: never raised for simulated (modeled) rows."""

GROUP_KEYS = ["workload", "gpu", "model", "quantization", "variant"]
"""One series of batch sizes: the same cell config except batch size and repeat."""
HOW_MEASURED = ["api", "prompt_mode", "token_count_source", "itl_basis"]
"""Runs columns that say how a client-driven cell was measured, carried into the points."""
CPU = "cpu"
"""``device`` (and ``gpu``) of a row whose engine ran on the CPU."""

SUM_COLUMNS = [
    N_REQUESTS_TOTAL, N_REQUESTS_MEASURED, N_REQUESTS_OK, N_REQUESTS_FAILED,
    N_REQUESTS_DRAINED, N_REQUESTS_COMPLETED_IN_WINDOW, OUTPUT_TOKENS_IN_WINDOW, N_REQUESTS_CANCELLED,
]


class SweepError(OrchestratorError, ValueError):
    """The input cannot make a report (no sweep, no ok cell, missing baseline). One line."""


@dataclass
class SweepData:
    """A loaded sweep. ``runs``: one row per complete cell (all statuses, derived columns
    added); ``configs``: cell_id -> canonical config. Request and power rows are read on demand,
    only the columns asked for (a sweep may hold millions of request rows)."""

    path: str
    runs: pd.DataFrame
    configs: Mapping[str, CellConfig]  # typed config of every cell that stored one (built on first use)
    _store: store.Store

    @property
    def name(self) -> str:
        names = self.runs["sweep"].dropna().unique()
        return ", ".join(sorted(map(str, names))) or self.path

    @property
    def ok(self) -> pd.DataFrame:
        """The cells with status ``ok`` (the only ones in metric tables)."""
        return self.runs[self.runs["status"] == "ok"]

    @property
    def not_ok(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] != "ok"]

    def requests(self, columns: list[str] | None = None, cells: set[str] | None = None) -> pa.Table:
        """The ``requests`` rows of the complete cells (or of ``cells`` among them; Arrow), only
        ``columns``."""
        complete = set(self.runs["cell_id"])
        return _read_table(self._store, "requests", complete if cells is None else complete & cells, columns)

    def power(self, cell_id: str) -> pd.DataFrame:
        """The power samples of one cell (empty frame when it has none)."""
        return _read_table(self._store, "power", {cell_id}, None).to_pandas()


def read_sweep(path: str) -> SweepData:
    """Load a sweep directory (or URI); raise ``SweepError`` when it holds no complete cell."""
    if "://" not in path and not os.path.isdir(os.path.join(path, "runs")):
        raise SweepError(f"{path}: no sweep here (expected a runs/ folder of Parquet files)")
    st = store.Store.open(path)
    runs_t = _read_table(st, "runs", None, None)
    if runs_t.num_rows == 0:
        raise SweepError(f"{path}: the sweep has no complete cell (runs/ holds no Parquet file)")
    runs = runs_t.to_pandas()
    versions = set(runs["schema_version"].dropna().astype(int)) - set(store_schema.READABLE_VERSIONS)
    if versions:
        raise SweepError(f"{path}: results use schema version {sorted(versions)}; this reads "
                         f"{list(store_schema.READABLE_VERSIONS)}")
    configs = StoredConfigs({cid: text for cid, text in zip(runs["cell_id"], runs["config_json"]) if text})
    return SweepData(path=path, runs=prepare_runs(runs, configs), configs=configs, _store=st)


class StoredConfigs(Mapping):
    """cell_id -> typed ``CellConfig``, parsed from the stored ``config_json`` on first access and
    kept (``prepare_runs`` reads every one for the series)."""

    def __init__(self, texts: dict[str, str]):
        self.texts = texts
        self._typed: dict[str, CellConfig] = {}

    def __getitem__(self, cell_id: str) -> CellConfig:
        if cell_id not in self._typed:
            self._typed[cell_id] = cell_config_from_json(self.texts[cell_id])
        return self._typed[cell_id]

    def __iter__(self):
        return iter(self.texts)

    def __len__(self) -> int:
        return len(self.texts)


def _read_table(st: store.Store, table: str, cells: set[str] | None, columns) -> pa.Table:
    """Rows of ``table`` for ``cells`` (None: every file), projected on ``columns``.

    Follows the store's layout (``<root>/<table>/<cell_id>.parquet``); a cell is complete when its
    ``runs`` file exists, so callers pass the cell ids of the loaded ``runs`` rows."""
    selector = pafs.FileSelector(f"{st.root}/{table}", allow_not_found=True)
    files = sorted(
        i.path for i in st.filesystem.get_file_info(selector)
        if i.path.endswith(".parquet") and (cells is None or _stem(i.path) in cells)
    )
    schema = store_schema.SCHEMAS[table]
    if not files:
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    return st.read(table, files, columns=columns, schema=schema)


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1][: -len(".parquet")]


def prepare_runs(runs: pd.DataFrame, configs: StoredConfigs | dict[str, CellConfig]) -> pd.DataFrame:
    """Add ``variant``, ``engine_options``, ``series``, ``flags``, ``simulated``, ``energy_available``,
    ``energy_measured``, the J per output token columns and ``context_tokens`` (see module doc);
    clear the energy-measurement flags of simulated rows; rows sorted by workload, gpu, model,
    quant, batch size."""
    df = runs.copy()
    df["device"] = ran_on(df)
    df.loc[df["device"] == CPU, "gpu"] = CPU  # what it ran on, in every label and filter
    cache = IdentityCache()
    identities = [_series_of(configs, cid, str(engine), cache) for cid, engine in zip(df["cell_id"], df["engine"])]
    df["variant"] = [digest(ident)[:4] if ident is not None else "" for ident in identities]
    df["engine_options"] = [json.dumps(flat_identity(ident.get("engine", {})), sort_keys=True) if ident is not None else "{}"
                            for ident in identities]
    df["series"] = series_labels(df, [flat_identity(ident) if ident is not None else {} for ident in identities])
    df["simulated"] = (df["engine"] == "simulated") | (df[ENERGY_SOURCE] == "simulated")
    knobs = EngineConfig()  # offline cells: batch_size is each static batch's size, in every engine
    df["batch_knob"] = ["batch size" if a == "offline" else knobs.options(str(e)).batch_knob
                        for e, a in zip(df["engine"], df["arrival"])]
    for column in MODEL_ENERGY_FLAGS:
        if column in df:
            df[column] = df[column].where(~df["simulated"], False)
    df["flags"] = flag_codes(df)
    df["energy_available"] = df[ENERGY_J].notna() & ~df[ENERGY_INVALID].fillna(False).astype(bool)
    df["energy_measured"] = df["energy_available"] & ~df["simulated"]
    for prefix in ("", "net_"):
        df[f"{prefix}energy_per_output_token_j"] = df[f"{prefix}energy_per_1k_output_tokens_j"] / 1000.0
    # the GPUs a cell spans (null in files from before tensor parallelism: one) and its tok/s per GPU
    gpus = df[TENSOR_PARALLEL_SIZE] if TENSOR_PARALLEL_SIZE in df else pd.Series(1, index=df.index)
    df[TENSOR_PARALLEL_SIZE] = gpus.fillna(1).astype(int)
    df[OUTPUT_TOK_S_PER_GPU] = df[OUTPUT_THROUGHPUT_TOK_S] / df[TENSOR_PARALLEL_SIZE]
    inp = df[INPUT_TOKENS_PER_REQUEST_MEAN].fillna(df["input_tokens_mean_cfg"])
    out = df[OUTPUT_TOKENS_PER_REQUEST_MEAN].fillna(df["output_tokens_mean_cfg"])
    df["context_tokens"] = inp + out / 2.0
    order = ["workload", "gpu", "model", "quantization", "variant", "batch_size", "repeat"]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def ran_on(runs: pd.DataFrame) -> pd.Series:
    """``"cpu"`` for the rows whose engine ran on the CPU (``engine_extra``'s ``device``: an hf cell
    with no GPU), else ``"gpu"``."""
    extra = runs["engine_extra"] if "engine_extra" in runs else pd.Series("", index=runs.index)
    return pd.Series([CPU if json.loads(e or "{}").get("device") == CPU else "gpu" for e in extra.fillna("")],
                     index=runs.index, dtype=object)


def _series_of(configs: StoredConfigs | dict[str, CellConfig], cell_id: str, engine: str,
               cache: IdentityCache) -> dict | None:
    """The cell's series identity (its identity without batch size and repeat; see module doc);
    None without a stored config. Older stores: a config this code no longer parses, or an engine
    no longer registered, stands for itself as stored (without batch size and repeat)."""
    try:
        config = configs.get(cell_id)
    except (ValueError, TypeError):  # e.g. a retired option value (parsed from its stored text)
        if not isinstance(configs, StoredConfigs):
            raise
        return _without_axes(json.loads(configs.texts[cell_id]), engine)
    if config is None:
        return None
    if engine not in EngineConfig.blocks():  # an engine this code no longer has
        return _without_axes(as_plain(config), engine)
    return series_identity(config, engine, cache)


def _without_axes(plain: dict, engine: str) -> dict:
    """A stored config as its own series identity: without batch size and repeat, and of the
    engine group only the engine that ran it (another engine's knobs never split a series)."""
    out = {k: v for k, v in plain.items() if k not in ("batch_size", "repeat")}
    if isinstance(out.get("engine"), dict):
        out["engine"] = {"name": engine, engine: out["engine"].get(engine)}
    return out


def flag_codes(df: pd.DataFrame) -> pd.Series:
    """Space-separated flag codes of each row ("" when no flag is raised)."""
    parts = []
    for column, (code, _) in FLAGS.items():
        raised = df[column].fillna(False).astype(bool) if column in df else pd.Series(False, index=df.index)
        parts.append(raised.map({True: code, False: ""}))
    joined = pd.concat(parts, axis=1).apply(lambda r: " ".join(c for c in r if c), axis=1) if len(df) else []
    return pd.Series(joined, index=df.index, dtype=object)


def flag_counts(df: pd.DataFrame) -> dict[str, int]:
    """Flag column -> number of rows that raise it."""
    return {c: int(df[c].fillna(False).astype(bool).sum()) if c in df else 0 for c in FLAGS}


def batch_points(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, workload, batch size): repeats folded, with ``n_repeats`` and the
    repeat metrics' 95% intervals and CVs (see module doc and ``analysis.repeats``)."""
    keys = GROUP_KEYS + ["series", "batch_size"]
    numeric = [c for c in ok.select_dtypes("number").columns if c not in keys + ["repeat", "schema_version"]]
    agg: dict[str, str | Callable[[pd.Series], str]] = {c: ("sum" if c in SUM_COLUMNS else "mean") for c in numeric}
    agg.update({f: "any" for f in FLAGS})
    agg.update(simulated="any", energy_available="all", energy_measured="all", cell_id=_join_ids,
               energy_source="first", energy_note="first", engine="first", engine_options="first",
               arrival="first", device="first", batch_knob="first")
    agg.update({c: "first" for c in HOW_MEASURED + [WORKLOAD_SOURCE] if c in ok})
    frame = ok.copy()
    for f in FLAGS:
        frame[f] = frame[f].fillna(False).astype(bool)
    # (copies: an aggregate of ~100 columns is one block per column; consolidated, adding columns
    # raises no PerformanceWarning, which would print on stderr above a one-line error)
    out = frame.groupby(keys, sort=False, dropna=False).agg(agg).copy()
    out["n_cells"] = frame.groupby(keys, sort=False, dropna=False).size()
    out = out.join(repeat_stats(frame, keys)).reset_index().copy()
    out["flags"] = flag_codes(out)
    return out.copy()


def _join_ids(ids: pd.Series) -> str:
    return ",".join(ids)


def baseline_sizes(points: pd.DataFrame, baseline_batch: int | None = None) -> pd.Series:
    """The baseline batch size of each row's series (aligned with ``points``): each series'
    smallest batch size when ``baseline_batch`` is None, else ``baseline_batch`` where the series
    ran it and NaN where it did not."""
    keys = [points[k] for k in GROUP_KEYS + ["series"]]
    if baseline_batch is None:
        return points["batch_size"].groupby(keys, sort=False, dropna=False).transform("min").astype(float)
    has = (points["batch_size"] == baseline_batch).groupby(keys, sort=False, dropna=False).transform("any")
    return pd.Series(float(baseline_batch), index=points.index).where(has.astype(bool))


def require_baseline(points: pd.DataFrame, baseline_batch: int | None) -> None:
    """Raise ``SweepError`` when a baseline batch size is given and no ok cell ran it (None:
    each series' smallest batch size, which always exists)."""
    if baseline_batch is not None and not (points["batch_size"] == baseline_batch).any():
        sizes = ", ".join(str(b) for b in sorted(points["batch_size"].unique()))
        raise SweepError(f"baseline batch size {baseline_batch} is not in the sweep's ok cells "
                         f"(they ran batch sizes {sizes}); pass --baseline-batch with one of them, or leave it "
                         "out to compare each series with its smallest batch size")


def require_ok(data: SweepData) -> pd.DataFrame:
    """The ok cells; ``SweepError`` when there are none."""
    ok = data.ok
    if ok.empty:
        counts = data.runs["status"].value_counts()
        text = ", ".join(f"{n} {s}" for s, n in counts.items())
        raise SweepError(f"{data.path}: no cell finished ok ({text}); nothing to report")
    return ok


def pct_change(new, base):
    """Relative change in % (``(new - base) / base x 100``); NaN where base is 0 or missing."""
    import numpy as np

    new, base = np.asarray(new, dtype=float), np.asarray(base, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(base != 0, (new - base) / base * 100.0, np.nan)
    return out if out.ndim else float(out)
