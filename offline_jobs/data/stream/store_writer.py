"""Writing a sample store chunk by chunk: appended in order, or preallocated and written in any
order; it appears at its path whole, or not at all."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import numpy as np

from offline_jobs.data.dataset import SampleRows
from offline_jobs.data.stream.format import (
    NPY_HEADER_BYTES,
    STORE_FORMAT_VERSION,
    STORE_MANIFEST_FILE,
    FeatureTables,
    StoreColumn,
    StoreError,
    StoreManifest,
    column_dtype,
    npy_header,
    read_rows,
    write_rows,
)
from offline_jobs.data.stream.store import SampleStore
from prerank_contract.bundle import fsync_dir, sha256_file

log = logging.getLogger(__name__)


class SampleStoreWriter:
    """Writes a store chunk by chunk, then `commit`s it.

    Two modes. Appending (`rows=None`): `append` any number of `SampleRows`, each after the last.
    Preallocated (`rows=n`): the n rows are written in any order with `write_at` (and may be
    read back with `read_at` and rewritten), as `shuffle_store` does.

    Rows go straight to the column files of a hidden temp directory next to `path` (nothing is
    held in memory but the block being written); `commit` writes the final row count into each
    header, fsyncs, hashes every file, writes the manifest and renames the directory into place.
    Used as a context manager it removes the temp directory unless `commit` succeeded, so `path`
    appears whole or not at all.
    """

    def __init__(
        self,
        path: Path,
        tables: FeatureTables,
        *,
        dataset: str,
        chunk_rows: int,
        sample_user_features: bool = False,
        sample_item_features: bool = False,
        details: dict[str, object] | None = None,
        rows: int | None = None,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows={chunk_rows}: must be at least 1")
        if rows is not None and rows < 0:
            raise ValueError(f"rows={rows}: must be at least 0")
        if path.exists():
            raise FileExistsError(f"{path}: already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tables = tables
        self.dataset = dataset
        self.chunk_rows = chunk_rows
        self.details = details or {}
        self.capacity = rows
        self.rows = 0 if rows is None else rows
        self._written = 0  # rows written by write_at (a preallocated store must be covered)
        self._committed = False
        self._shapes = tables.row_shapes(
            sample_user=sample_user_features, sample_item=sample_item_features
        )
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        self._files: dict[str, BinaryIO] = {}
        for name, row_shape in self._shapes.items():
            handle = (self._tmp / f"{name}.npy").open("w+b")
            self._files[name] = handle
            handle.write(npy_header(column_dtype(name), (self.rows, *row_shape)))
            if rows is not None:
                row_bytes = column_dtype(name).itemsize * math.prod(row_shape)
                handle.truncate(NPY_HEADER_BYTES + rows * row_bytes)

    def append(self, rows: SampleRows) -> None:
        """Write `rows` after the rows already appended (checked against the tables first)."""
        if self.capacity is not None:
            raise StoreError(f"{self.path}: a preallocated store is written with write_at")
        self._write(self.rows, rows)
        self.rows += len(rows)

    def write_at(self, start: int, rows: SampleRows) -> None:
        """Write `rows` over rows [start, start + len(rows)) of a preallocated store."""
        if self.capacity is None:
            raise StoreError(f"{self.path}: write_at needs a preallocated store (rows=...)")
        if not 0 <= start <= start + len(rows) <= self.capacity:
            raise IndexError(f"rows [{start}, {start + len(rows)}) outside {self.capacity}")
        self._write(start, rows)
        self._written += len(rows)

    def read_at(self, start: int, stop: int) -> SampleRows:
        """Rows [start, stop) as written so far (of a preallocated store)."""
        if self.capacity is None or not 0 <= start <= stop <= self.capacity:
            raise IndexError(f"rows [{start}, {stop}) outside the preallocated {self.capacity}")
        return SampleRows(
            **{
                name: read_rows(
                    self._files[name],
                    start,
                    np.empty((stop - start, *shape), dtype=column_dtype(name)),
                    self._tmp / f"{name}.npy",
                )
                for name, shape in self._shapes.items()
            }
        )

    def _write(self, start: int, rows: SampleRows) -> None:
        columns = rows.columns()
        if columns.keys() != self._shapes.keys():
            raise StoreError(
                f"{self.path}: written columns {sorted(columns)}, the store has "
                f"{sorted(self._shapes)}"
            )
        n = len(rows)
        for name, array in columns.items():
            expected = (n, *self._shapes[name])
            if array.shape != expected:
                raise StoreError(
                    f"{self.path}: {name} has shape {array.shape}, expected {expected}"
                )
        self._check_ids(rows)
        for name, array in columns.items():
            write_rows(
                self._files[name], start, np.ascontiguousarray(array, dtype=column_dtype(name))
            )

    def _check_ids(self, rows: SampleRows) -> None:
        """Every id must be a row of its table: a store is only ever read through them."""
        limits = (
            ("user_ids", rows.user_ids, self.tables.user_features.shape[0]),
            ("item_ids", rows.item_ids, self.tables.item_features.shape[0]),
            ("histories", rows.histories, self.tables.item_features.shape[0]),
        )
        for name, ids, table_rows in limits:
            if ids.size and (ids.min() < 0 or ids.max() >= table_rows):
                raise StoreError(
                    f"{self.path}: {name} outside [0, {table_rows}) (ids {ids.min()}..{ids.max()})"
                )

    def commit(self) -> SampleStore:
        """Finish the store and rename it into place; the opened store, bound to the tables.
        On any error the temp directory is removed and `path` is not created."""
        try:
            store = self._commit()
        except BaseException:
            self.abort()
            raise
        self._committed = True
        return store

    def _commit(self) -> SampleStore:
        if self.capacity is not None and self._written < self.capacity:
            raise StoreError(
                f"{self.path}: {self._written} of the {self.capacity} preallocated rows written"
            )
        columns = {}
        for name, handle in self._files.items():
            shape = (self.rows, *self._shapes[name])
            handle.seek(0)
            handle.write(npy_header(column_dtype(name), shape))
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            file = self._tmp / f"{name}.npy"
            columns[name] = StoreColumn(
                file=file.name,
                dtype=column_dtype(name).str,
                shape=shape,
                bytes=file.stat().st_size,
                sha256=sha256_file(file),
            )
        manifest = StoreManifest(
            format_version=STORE_FORMAT_VERSION,
            dataset=self.dataset,
            rows=self.rows,
            chunk_rows=self.chunk_rows,
            schema_fingerprint=self.tables.schema.fingerprint,
            tables_fingerprint=self.tables.fingerprint(),
            columns=columns,
            details=self.details,
        )
        manifest_path = self._tmp / STORE_MANIFEST_FILE
        with manifest_path.open("w") as manifest_file:
            manifest_file.write(json.dumps(manifest.model_dump(mode="json"), indent=2))
            manifest_file.flush()
            os.fsync(manifest_file.fileno())
        fsync_dir(self._tmp)
        self._tmp.rename(self.path)
        fsync_dir(self.path.parent)
        log.info("wrote sample store %s: %d rows, %d columns", self.path, self.rows, len(columns))
        return SampleStore(self.path, manifest, self.tables)

    def abort(self) -> None:
        """Drop everything written; `path` was never created."""
        for handle in self._files.values():
            handle.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._committed:  # an error, or a block left without commit: nothing appears
            self.abort()
