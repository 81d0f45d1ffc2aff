"""Opening a sample store: its manifest and files checked against the feature tables its ids
index into, then rows read by position.

Only the per-sample columns live on disk. The feature tables (`user_features [M+1, S_u]`,
`item_features [N+1, S_i]`) stay in memory: they grow with users and items, not with samples,
and every batch gathers rows of them (`SampleRows.gather`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from offline_jobs.data.dataset import SampleRows
from offline_jobs.data.stream.format import (
    NPY_HEADER_BYTES,
    STORE_FORMAT_VERSION,
    STORE_MANIFEST_FILE,
    FeatureTables,
    StoreError,
    StoreManifest,
    column_dtype,
    read_npy_header,
    read_rows,
)
from prerank_contract.bundle import sha256_file


@dataclass(frozen=True)
class SampleStore:
    """An opened, checked store bound to the feature tables its ids index into."""

    path: Path
    manifest: StoreManifest
    tables: FeatureTables

    @classmethod
    def open(cls, path: Path, tables: FeatureTables, *, verify: bool = True) -> SampleStore:
        """Read and check the manifest against `tables` and the files (sizes and headers always,
        sha256 of every file with `verify`); `StoreError` names the first problem."""
        manifest_path = path / STORE_MANIFEST_FILE
        if not manifest_path.is_file():
            raise StoreError(f"{path}: not a sample store (no {STORE_MANIFEST_FILE})")
        try:
            manifest = StoreManifest.model_validate_json(manifest_path.read_bytes())
        except ValidationError as exc:
            raise StoreError(f"{manifest_path}: invalid manifest: {exc}") from exc
        if manifest.format_version != STORE_FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format {manifest.format_version}, this code reads "
                f"{STORE_FORMAT_VERSION}"
            )
        if manifest.schema_fingerprint != tables.schema.fingerprint:
            raise StoreError(
                f"{path}: written for feature schema {manifest.schema_fingerprint}, the data "
                f"has schema {tables.schema.fingerprint} (another dataset or vocabulary)"
            )
        if manifest.tables_fingerprint != tables.fingerprint():
            raise StoreError(
                f"{path}: written against other feature tables (same schema, other users or "
                "items, e.g. another seed): its ids would index the wrong rows"
            )
        expected = tables.row_shapes(
            sample_user="sample_user_features" in manifest.columns,
            sample_item="sample_item_features" in manifest.columns,
        )
        if manifest.columns.keys() != expected.keys():
            raise StoreError(
                f"{path}: columns {sorted(manifest.columns)}, expected {sorted(expected)}"
            )
        for name, row_shape in expected.items():
            check_column(path, name, manifest, (manifest.rows, *row_shape), verify=verify)
        return cls(path, manifest, tables)

    @property
    def rows(self) -> int:
        return self.manifest.rows

    @property
    def chunk_rows(self) -> int:
        return self.manifest.chunk_rows

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.rows / self.chunk_rows)

    def chunk_bounds(self, chunk: int) -> tuple[int, int]:
        """[start, stop) rows of chunk `chunk`; the last chunk may be shorter."""
        start = chunk * self.chunk_rows
        return start, min(start + self.chunk_rows, self.rows)

    def read_rows(self, start: int, stop: int) -> SampleRows:
        """Rows [start, stop) of every column: one positioned read per column, nothing else
        materialised."""
        if not 0 <= start <= stop <= self.rows:
            raise IndexError(f"rows [{start}, {stop}) outside the store's {self.rows}")
        columns = {}
        for name, entry in self.manifest.columns.items():
            file = self.path / entry.file
            out = np.empty((stop - start, *entry.shape[1:]), dtype=np.dtype(entry.dtype))
            with file.open("rb", buffering=0) as handle:
                columns[name] = read_rows(handle, start, out, file)
        return SampleRows(**columns)


def check_column(
    path: Path, name: str, manifest: StoreManifest, shape: tuple[int, ...], *, verify: bool
) -> None:
    entry = manifest.columns[name]
    file = path / entry.file
    if not file.is_file():
        raise StoreError(f"{file}: listed in the manifest but missing")
    if entry.shape != shape or np.dtype(entry.dtype) != column_dtype(name):
        raise StoreError(
            f"{file}: manifest says {entry.dtype} {entry.shape}, expected "
            f"{column_dtype(name).str} {shape}"
        )
    dtype, file_shape, offset = read_npy_header(file)
    if dtype != column_dtype(name) or file_shape != shape or offset != NPY_HEADER_BYTES:
        raise StoreError(
            f"{file}: header says {dtype.str} {file_shape} (data at byte {offset}), the manifest "
            f"{entry.dtype} {entry.shape} (data at byte {NPY_HEADER_BYTES})"
        )
    size = file.stat().st_size
    if size != entry.bytes or size != NPY_HEADER_BYTES + dtype.itemsize * math.prod(shape):
        raise StoreError(f"{file}: {size} bytes, expected {entry.bytes} (truncated or extended)")
    if verify and sha256_file(file) != entry.sha256:
        raise StoreError(f"{file}: sha256 mismatch (corrupted)")
