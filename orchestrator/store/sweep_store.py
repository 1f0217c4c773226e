"""Parquet store: explicit, versioned schemas; one file per cell and table; atomic writes.

Layout under a sweep's root (local dir or any pyarrow filesystem URI)::

    runs/<cell_id>.parquet      one row: config, status, metrics, energy, environment
    requests/<cell_id>.parquet  one row per request
    power/<cell_id>.parquet     one row per power sample

Only the driver writes. A cell's ``requests`` and ``power`` files are written before its ``runs``
file, each to a temporary name then moved into place, so a cell is complete exactly when its
``runs`` file exists, and a killed writer never leaves a partial file under a final name.
``load(dir)`` reads only complete cells.

A cell file that cannot be read (truncated, garbage, zero bytes) never stops a read: it is moved
aside with the cell's other files to ``unreadable/<table>/`` under the store (not deleted), named
in ``Store.set_aside`` (one line each, which the runner and the report print), and the cell counts
as not done, so a resumed sweep measures it again; every other cell is read.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from orchestrator.store.schema import READABLE_VERSIONS, RUNS_SCHEMA, SCHEMAS, TABLES, empty_table, with_meta

log = logging.getLogger(__name__)
UNREADABLE_DIR = "unreadable"
UPGRADED_MARK = ".columns"
"""Under the root: the columns of the last ``Store.upgrade`` pass (its files need none before a new column)."""
TMP_MARK = ".tmp-"
"""Between a file's final name and the random suffix of its temporary one."""


@dataclass
class Store:
    """A sweep's results on a pyarrow filesystem. ``root`` is a path on ``filesystem``."""

    filesystem: pafs.FileSystem
    root: str
    set_aside: List[str] = field(default_factory=list)  # one line per unreadable file moved aside here

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

    def read_text(self, name: str) -> Optional[str]:
        """The text of ``<root>/<name>`` (written by ``write_text``), or None when there is none."""
        from pyarrow import fs as pafs

        path = f"{self.root}/{name}"
        if self.filesystem.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.filesystem.open_input_stream(path) as f:
            return f.read().decode()

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
        for name in ("requests", "power", "steps"):
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
        t = self.runs_columns(["cell_id", "status"])
        return dict(zip(t.column("cell_id").to_pylist(), t.column("status").to_pylist()))

    def runs_columns(self, columns: List[str]) -> pa.Table:
        """Those columns of every complete cell's ``runs`` row (null where a file predates one)."""
        files = self._files("runs")
        if not files:
            return with_meta(RUNS_SCHEMA).empty_table().select(columns)
        return self.read("runs", files, columns=columns, schema=RUNS_SCHEMA)

    def runs_of(self, cell_ids: Iterable[str], columns) -> pa.Table:
        """The ``runs`` rows of those complete cells among ``cell_ids`` (only ``columns``)."""
        files = [self.path("runs", c) for c in dict.fromkeys(cell_ids)]
        infos = self.filesystem.get_file_info(files) if files else []
        present = [i.path for i in infos if i.type == pafs.FileType.File]
        if not present:
            return with_meta(RUNS_SCHEMA).empty_table().select(list(columns))
        return self.read("runs", present, columns=list(columns), schema=RUNS_SCHEMA)

    def _files(self, table: str):
        sel = pafs.FileSelector(f"{self.root}/{table}", allow_not_found=True)
        return sorted(i.path for i in self.filesystem.get_file_info(sel) if i.path.endswith(".parquet"))

    def load(self) -> "SweepTables":
        before = len(self.set_aside)
        runs_files = self._files("runs")
        complete = {os.path.basename(p)[: -len(".parquet")] for p in runs_files}
        out = {}
        for name in TABLES:
            files = [p for p in self._files(name) if os.path.basename(p)[: -len(".parquet")] in complete]
            out[name] = self.read(name, files, schema=SCHEMAS[name]) if files else empty_table(name)
        if len(self.set_aside) > before:  # a runs file set aside while reading another table: its cell is not complete
            return self.load()
        return SweepTables(**out)

    def read(self, table: str, files: List[str], columns: Optional[List[str]] = None,
             schema: Optional[pa.Schema] = None) -> pa.Table:
        """Rows of ``files`` (of ``table``), projected on ``columns``; an unreadable file's cell is
        set aside (see module doc) and the rest is read."""
        try:
            return _read(self.filesystem, files, columns=columns, schema=schema)
        except (pa.ArrowInvalid, OSError):
            bad = [f for f in files if not self._readable(f)]
            if not bad:
                raise
        for path in bad:
            self._set_aside(os.path.basename(path)[: -len(".parquet")], path)
        good = [f for f in files if self.filesystem.get_file_info(f).type == pafs.FileType.File]
        if not good:
            empty = (schema or SCHEMAS[table]).empty_table()
            return empty.select(columns) if columns else empty
        return self.read(table, good, columns, schema)

    def upgrade(self, force: bool = False) -> int:
        """Bring every file up to its table's current schema, so a query over ``runs/*.parquet``
        sees one set of columns: a column added since a file was written is added to it, null; a
        column the schema no longer has (nothing reads it) is dropped; rows, values and the file's
        schema-version metadata are kept. Atomic per file; unreadable files are left to ``read``.
        A pass leaves ``UPGRADED_MARK`` naming the columns it brought the files to; while it names
        the current ones (every file written since has them) the next call reads no footer, unless
        ``force``. -> the number of files rewritten."""
        current = ";".join(",".join(SCHEMAS[t].names) for t in TABLES)
        if not force and self._read_text(UPGRADED_MARK) == current:
            return 0
        n = 0
        for table in TABLES:
            want = SCHEMAS[table]
            for path in self._files(table):
                names = self._column_names(path)
                if names is None or names == want.names:
                    continue
                old = pq.read_table(path, filesystem=self.filesystem)
                columns = [old.column(f.name).cast(f.type) if f.name in names else pa.nulls(old.num_rows, f.type)
                           for f in want]
                self._write_atomic(pa.Table.from_arrays(columns, schema=want.with_metadata(old.schema.metadata)), path)
                n += 1
        self.write_text(UPGRADED_MARK, current)
        return n

    def _read_text(self, name: str) -> Optional[str]:
        try:
            with self.filesystem.open_input_stream(f"{self.root}/{name}") as f:
                return f.read().decode()
        except (OSError, FileNotFoundError):
            return None

    def _column_names(self, path: str) -> Optional[List[str]]:
        """The file's column names (None where its footer does not read)."""
        try:
            with self.filesystem.open_input_file(path) as f:
                return list(pq.ParquetFile(f).schema_arrow.names)
        except (pa.ArrowInvalid, OSError):
            return None

    def _readable(self, path: str) -> bool:
        """Its Parquet footer reads."""
        return self._column_names(path) is not None

    def _set_aside(self, cell_id: str, unreadable: str) -> None:
        """Move the cell's files (runs first: the cell stops being complete) under ``unreadable/``."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for table in TABLES:
            src = self.path(table, cell_id)
            if self.filesystem.get_file_info(src).type != pafs.FileType.File:
                continue
            self.filesystem.create_dir(f"{self.root}/{UNREADABLE_DIR}/{table}", recursive=True)
            self.filesystem.move(src, f"{self.root}/{UNREADABLE_DIR}/{table}/{cell_id}.{stamp}.parquet")
        line = (f"unreadable file {unreadable} moved aside to {self.root}/{UNREADABLE_DIR}/ with its cell's other "
                f"files: cell {cell_id} counts as not done (a re-run of the sweep measures it again)")
        log.warning(line)
        self.set_aside.append(line)


def _read(filesystem, files, columns=None, schema=None) -> pa.Table:
    import pyarrow.dataset as ds

    dataset = ds.dataset(files, format="parquet", filesystem=filesystem, schema=schema)
    version = (dataset.schema.metadata or {}).get(b"orchestrator_schema_version")
    if version is not None and int(version) not in READABLE_VERSIONS:
        raise ValueError(f"results use schema version {int(version)}; this orchestrator reads {READABLE_VERSIONS}")
    return dataset.to_table(columns=columns)


@dataclass
class SweepTables:
    """The tables of a sweep (pyarrow). ``.runs.to_pandas()`` for a DataFrame."""

    runs: pa.Table
    requests: pa.Table
    power: pa.Table
    steps: pa.Table


def load(location: str) -> SweepTables:
    """Read the complete cells of a sweep directory (or URI)."""
    if "://" not in location and not os.path.isdir(os.path.join(location, "runs")):
        raise FileNotFoundError(f"{location}: no sweep here (expected a runs/ folder of Parquet files)")
    return Store.open(location).load()
