"""Parquet store: explicit, versioned schemas; one file per cell and table; atomic writes.

Layout under a sweep's root (local dir or any pyarrow filesystem URI)::

    runs/<cell_id>.parquet      one row: config, status, metrics, energy, environment
    requests/<cell_id>.parquet  one row per request
    power/<cell_id>.parquet     one row per power sample

Only the driver writes. A cell's ``requests`` and ``power`` files are written before its ``runs``
file, each to a temporary name then moved into place, so a cell is complete exactly when its
``runs`` file exists, and a killed writer never leaves a partial file under a final name.
``load(dir)`` reads only complete cells.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Dict, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

SCHEMA_VERSION = 3
"""2: ``cell_id`` hashes the declared identity of the resolved engine (``orchestrator.core.identity``)
and ``config_json`` holds typed values (enums as strings). Version 1 stores (ids over the whole
config) load the same; their cells simply do not match version-2 ids, so a re-run measures them
again. 3: bounded drains (``cancelled`` requests, ``n_requests_cancelled``, ``drain_*``), offline
windows of at least ``min_window_s`` (``n_batches_measured``, ``batch_output_tok_s_cv``), prompts
keyed by the cell (``prompt_hash``) and prefix caching off: new workload/engine fields, so new
ids; older stores load with those columns null. The quantization method and linear kernel the
engine reports it ran (``quantization_method``, ``linear_kernel``) are columns too. Added since,
without a new version (older files load with them null): ``itl_basis`` (token | chunk),
``engine=endpoint``'s ``prompt_mode`` (token_ids | text), ``token_times_source`` (token_ids |
continuous_usage | chunks), ``request_dialect`` (vllm | openai) and ``n_prompt_tokens_mismatch``,
and ``energy_per_gpu_j`` (JSON {GPU UUID: J} where a cell's energy is summed over several GPUs)."""
READABLE_VERSIONS = (1, 2, 3)
TABLES = ("runs", "requests", "power")
F64, I64, STR, BOOL = pa.float64(), pa.int64(), pa.string(), pa.bool_()

_PCT = [f"{m}_{p}_ms" for m in ("ttft", "tpot", "itl", "e2e") for p in ("p50", "p90", "p99", "mean")]

RUNS_SCHEMA = pa.schema(
    [
        ("cell_id", STR), ("sweep", STR), ("schema_version", I64), ("status", STR), ("error", STR),
        ("attempts", I64), ("engine", STR), ("engine_requested", STR), ("engine_reason", STR),
        ("model", STR), ("quantization", STR), ("gpu", STR), ("accelerator_type", STR),
        ("batch_size", I64), ("workload", STR), ("arrival", STR), ("repeat", I64), ("seed", I64),
        ("input_tokens_mean_cfg", F64), ("output_tokens_mean_cfg", F64), ("config_json", STR),
        ("window_start_s", F64), ("window_end_s", F64), ("window_s", F64),
        ("n_requests_total", I64), ("n_requests_measured", I64), ("n_requests_ok", I64),
        ("n_requests_failed", I64), ("n_requests_drained", I64), ("n_requests_completed_in_window", I64),
        ("n_requests_cancelled", I64), ("drain_timeout_s", F64), ("drain_s", F64), ("min_window_s", F64),
        ("n_batches_measured", I64), ("batch_output_tok_s_cv", F64),
        ("offered_rate_rps", F64), ("scheduled_rate_rps", F64), ("achieved_rate_rps", F64), ("request_throughput_rps", F64),
        ("output_tokens_in_window", I64), ("output_throughput_tok_s", F64), ("total_throughput_tok_s", F64),
        ("output_tokens_per_request_mean", F64), ("input_tokens_per_request_mean", F64),
        ("token_count_mismatch", BOOL), ("saturated", BOOL), ("mean_running_batch", F64),
    ]
    + [(c, F64) for c in _PCT]
    + [("itl_basis", STR)]
    + [
        ("energy_source", STR), ("energy_note", STR), ("energy_j", F64), ("energy_integrated_j", F64),
        ("idle_power_w", F64), ("baseline_energy_j", F64), ("net_energy_j", F64),
        ("energy_per_request_j", F64), ("net_energy_per_request_j", F64),
        ("energy_per_1k_output_tokens_j", F64), ("net_energy_per_1k_output_tokens_j", F64),
        ("mean_power_w", F64), ("max_power_w", F64), ("energy_invalid", BOOL), ("energy_mismatch", BOOL),
        ("short_window", BOOL), ("counter_update_period_s", F64), ("gpu_util_mean_pct", F64),
        ("memory_used_max_mib", F64), ("sm_clock_mean_mhz", F64), ("temperature_max_c", F64),
        ("node_id", STR), ("host", STR), ("gpu_name", STR), ("gpu_uuid", STR), ("ray_gpu_ids", STR),
        ("assigned_resources", STR), ("engine_versions", STR), ("engine_start_s", F64),
        ("engine_shared_cells", I64), ("engine_extra", STR), ("quantization_method", STR),
        ("linear_kernel", STR), ("prompt_mode", STR), ("token_times_source", STR), ("request_dialect", STR),
        ("n_prompt_tokens_mismatch", I64), ("energy_per_gpu_j", STR), ("cell_wall_s", F64),
        ("started_unix_s", F64), ("finished_unix_s", F64),
    ]
)

REQUESTS_SCHEMA = pa.schema(
    [
        ("cell_id", STR), ("request_index", I64), ("phase", STR), ("batch_index", I64),
        ("scheduled_arrival_s", F64), ("send_s", F64), ("first_token_s", F64), ("end_s", F64),
        ("n_token_times", I64), ("input_tokens", I64), ("output_tokens", I64),
        ("requested_output_tokens", I64), ("ttft_ms", F64), ("tpot_ms", F64), ("e2e_ms", F64),
        ("drained", BOOL), ("status", STR), ("error", STR), ("prompt_hash", STR),
    ]
)

POWER_SCHEMA = pa.schema(
    [
        ("cell_id", STR), ("t_ns", I64), ("t_rel_s", F64), ("power_w", F64), ("energy_mj", F64),
        ("util_pct", F64), ("memory_used_mib", F64), ("sm_clock_mhz", F64), ("temperature_c", F64),
        ("in_window", BOOL),
    ]
)

SCHEMAS = {"runs": RUNS_SCHEMA, "requests": REQUESTS_SCHEMA, "power": POWER_SCHEMA}


def _with_meta(schema: pa.Schema) -> pa.Schema:
    return schema.with_metadata({"orchestrator_schema_version": str(SCHEMA_VERSION)})


def runs_table(rows: Iterable[Dict]) -> pa.Table:
    """Rows -> runs table; missing columns are null, unknown keys are an error."""
    rows = list(rows)
    names = set(RUNS_SCHEMA.names)
    for r in rows:
        extra = set(r) - names
        if extra:
            raise KeyError(f"runs row has columns not in the schema: {sorted(extra)}")
    cols = {n: [r.get(n) for r in rows] for n in RUNS_SCHEMA.names}
    return pa.Table.from_pydict(cols, schema=_with_meta(RUNS_SCHEMA))


def columns_table(table: str, columns: Dict) -> pa.Table:
    """Columnar dict (lists or numpy arrays) -> a requests/power table with the exact schema."""
    schema = SCHEMAS[table]
    n = len(next(iter(columns.values()))) if columns else 0
    arrays = [pa.array(columns[f.name] if f.name in columns else [None] * n, type=f.type, from_pandas=True)
              for f in schema]
    return pa.Table.from_arrays(arrays, schema=_with_meta(schema))


def empty_table(table: str) -> pa.Table:
    return _with_meta(SCHEMAS[table]).empty_table()


TMP_MARK = ".tmp-"
"""Between a file's final name and the random suffix of its temporary one."""


@dataclass
class Store:
    """A sweep's results on a pyarrow filesystem. ``root`` is a path on ``filesystem``."""

    filesystem: pafs.FileSystem
    root: str

    @classmethod
    def open(cls, location: str) -> "Store":
        """A local directory or a URI (``s3://bucket/x``, ``gs://``, ``hdfs://``, ``file://``)."""
        if "://" in location:
            filesystem, root = pafs.FileSystem.from_uri(location)
        else:
            filesystem, root = pafs.LocalFileSystem(), os.path.abspath(location)
        for t in TABLES:
            filesystem.create_dir(f"{root}/{t}", recursive=True)
        return cls(filesystem, root)

    def check_writable(self) -> None:
        """Write and delete a probe file (raises ``OSError`` where the store cannot be written)."""
        probe = f"{self.root}/.write-probe-{uuid.uuid4().hex}"
        with self.filesystem.open_output_stream(probe) as out:
            out.write(b"ok")
        self.filesystem.delete_file(probe)

    def path(self, table: str, cell_id: str) -> str:
        return f"{self.root}/{table}/{cell_id}.parquet"

    def _write_atomic(self, table: pa.Table, final: str) -> None:
        # one-row runs files: column statistics would cost more than they save
        self._replace(final, lambda out: pq.write_table(table, out, compression="snappy",
                                                        write_statistics=table.num_rows > 1))

    def write_text(self, name: str, text: str) -> None:
        """Replace ``<root>/<name>`` with ``text`` atomically (e.g. ``sweep.json``); two drivers
        writing it at once each write their own temporary file, and the last rename wins."""
        self._replace(f"{self.root}/{name}", lambda out: out.write(text.encode()))

    def _replace(self, final: str, write) -> None:
        """Write ``final`` through a temporary file of a unique name, renamed into place; a
        temporary file is never left behind by an error (a killed process may leave one:
        ``discard_partial``)."""
        tmp = f"{final}{TMP_MARK}{uuid.uuid4().hex}"
        try:
            with self.filesystem.open_output_stream(tmp) as out:
                write(out)
            self.filesystem.move(tmp, final)
        except BaseException:
            try:
                self.filesystem.delete_file(tmp)
            except (OSError, FileNotFoundError):
                pass
            raise

    def discard_partial(self, cell_ids: Iterable[str]) -> int:
        """Delete the temporary files that a killed writer left for ``cell_ids`` (cells this
        driver has claimed, so no live writer has them open); -> how many."""
        wanted, n = set(cell_ids), 0
        for table in TABLES:
            sel = pafs.FileSelector(f"{self.root}/{table}", allow_not_found=True)
            for info in self.filesystem.get_file_info(sel):
                name = os.path.basename(info.path)
                if TMP_MARK in name and name.split(".parquet", 1)[0] in wanted:
                    self._delete(info.path)
                    n += 1
        return n

    def write_cell(self, cell_id: str, tables: Dict[str, pa.Table]) -> None:
        """Write a cell's tables; ``runs`` last (it marks the cell complete)."""
        for name in ("requests", "power"):
            if name in tables and tables[name].num_rows:
                self._write_atomic(tables[name], self.path(name, cell_id))
            else:  # a re-run of the cell must not leave an older cell's rows behind
                self._delete(self.path(name, cell_id))
        self._write_atomic(tables["runs"], self.path("runs", cell_id))

    def _delete(self, path: str) -> None:
        try:
            self.filesystem.delete_file(path)
        except (FileNotFoundError, OSError):
            pass

    def completed(self) -> Dict[str, str]:
        """cell_id -> status of every complete cell."""
        files = self._files("runs")
        if not files:
            return {}
        t = _read(self.filesystem, files, columns=["cell_id", "status"])
        return dict(zip(t.column("cell_id").to_pylist(), t.column("status").to_pylist()))

    def runs_of(self, cell_ids: Iterable[str], columns) -> pa.Table:
        """The ``runs`` rows of those complete cells among ``cell_ids`` (only ``columns``)."""
        files = [self.path("runs", c) for c in dict.fromkeys(cell_ids)]
        infos = self.filesystem.get_file_info(files) if files else []
        present = [i.path for i in infos if i.type == pafs.FileType.File]
        if not present:
            return _with_meta(RUNS_SCHEMA).empty_table().select(list(columns))
        return _read(self.filesystem, present, columns=list(columns), schema=RUNS_SCHEMA)

    def _files(self, table: str):
        sel = pafs.FileSelector(f"{self.root}/{table}", allow_not_found=True)
        return sorted(i.path for i in self.filesystem.get_file_info(sel) if i.path.endswith(".parquet"))

    def load(self) -> "SweepTables":
        runs_files = self._files("runs")
        complete = {os.path.basename(p)[: -len(".parquet")] for p in runs_files}
        out = {}
        for name in TABLES:
            files = [p for p in self._files(name) if os.path.basename(p)[: -len(".parquet")] in complete]
            out[name] = _read(self.filesystem, files, schema=SCHEMAS[name]) if files else empty_table(name)
        return SweepTables(**out)


def _read(filesystem, files, columns=None, schema=None) -> pa.Table:
    import pyarrow.dataset as ds

    dataset = ds.dataset(files, format="parquet", filesystem=filesystem, schema=schema)
    version = (dataset.schema.metadata or {}).get(b"orchestrator_schema_version")
    if version is not None and int(version) not in READABLE_VERSIONS:
        raise ValueError(f"results use schema version {int(version)}; this orchestrator reads {READABLE_VERSIONS}")
    return dataset.to_table(columns=columns)


@dataclass
class SweepTables:
    """The three tables of a sweep (pyarrow). ``.runs.to_pandas()`` for a DataFrame."""

    runs: pa.Table
    requests: pa.Table
    power: pa.Table


def load(location: str) -> SweepTables:
    """Read the complete cells of a sweep directory (or URI)."""
    if "://" not in location and not os.path.isdir(os.path.join(location, "runs")):
        raise FileNotFoundError(f"{location}: no sweep here (expected a runs/ folder of Parquet files)")
    return Store.open(location).load()
