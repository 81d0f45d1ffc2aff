"""Training samples on disk, read one chunk of rows at a time, so that training memory does not
grow with the number of samples.

A store is a directory of `.npy` columns (one row per sample, rows in the order they were
appended) and a manifest, `store.json`:

| column | dtype | shape |
|---|---|---|
| `user_ids`, `item_ids`, `timestamps` | int64 | `[n]` |
| `labels` | float32 | `[n]` |
| `histories` | int64 | `[n, L]` |
| `sample_user_features`, `sample_item_features` (optional) | int64 | `[n, S_u]`, `[n, S_i]` |

The manifest records the row count, the chunk size, each column's dtype, shape, size and sha256,
the feature schema's fingerprint and a fingerprint of the feature tables the ids index into.
`SampleStore.open` refuses a store written for other tables, or whose files do not match.

Only the per-sample columns live on disk. The feature tables (`user_features [M+1, S_u]`,
`item_features [N+1, S_i]`) stay in memory: they grow with users and items, not with samples,
and every batch gathers rows of them (`gather_batch`).

Columns are written and read with plain positioned file I/O, not through a memory map: pages of a
mapped file count in the reading process's resident memory for as long as the map is held, so a
reader mapping a 10 GB store would look 10 GB large after one epoch. The files are ordinary
`.npy` files all the same (`np.load(path, mmap_mode="r")` maps them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offline_jobs.data.dataset import Batch, InteractionData, SampleRows
from offline_jobs.distributed import rank_shard
from prerank_contract.bundle import fsync_dir, sha256_file
from prerank_contract.features import FeatureSchema

log = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1
STORE_MANIFEST_FILE = "store.json"
# 64Ki rows of the synthetic world (L = 20) are about 12 MiB: big enough for sequential reads
# and a well-mixed shuffle, small beside the feature tables.
DEFAULT_CHUNK_ROWS = 65_536
# Every column file starts with a .npy 1.0 header of exactly this many bytes, written before the
# row count is known and rewritten in place once it is (the .npy format pads headers with spaces
# to a multiple of 64 bytes; 128 holds any dtype and shape of ours).
NPY_HEADER_BYTES = 128
_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_PREFIX_BYTES = len(_NPY_MAGIC) + 2  # magic and version, then the header length (uint16)

ID_DTYPE = np.dtype(np.int64)
LABEL_DTYPE = np.dtype(np.float32)


class StoreError(Exception):
    """A sample store that must not be read (or written): the message names it and the problem."""


@dataclass(frozen=True)
class FeatureTables:
    """What a store's ids index into: the schema and the user and item feature tables.

    user_features [M+1, S_u] int64, item_features [N+1, S_i] int64 (row = id, row 0 padding),
    history_length L (the width of every history row).
    """

    schema: FeatureSchema
    user_features: np.ndarray
    item_features: np.ndarray
    history_length: int

    @classmethod
    def of(cls, data: InteractionData) -> FeatureTables:
        return cls(data.schema, data.user_features, data.item_features, data.histories.shape[1])

    def fingerprint(self) -> str:
        """sha256 over the schema, both tables (shapes and bytes) and the history length."""
        digest = hashlib.sha256(self.schema.model_dump_json().encode())
        for table in (self.user_features, self.item_features):
            digest.update(repr((table.dtype.str, table.shape)).encode())
            digest.update(np.ascontiguousarray(table).data)
        digest.update(str(self.history_length).encode())
        return digest.hexdigest()

    def row_shapes(self, *, sample_user: bool, sample_item: bool) -> dict[str, tuple[int, ...]]:
        """Column name -> the shape of one row, for a store with or without per-sample
        feature overrides."""
        shapes: dict[str, tuple[int, ...]] = {
            "user_ids": (),
            "item_ids": (),
            "labels": (),
            "timestamps": (),
            "histories": (self.history_length,),
        }
        if sample_user:
            shapes["sample_user_features"] = (self.user_features.shape[1],)
        if sample_item:
            shapes["sample_item_features"] = (self.item_features.shape[1],)
        return shapes


def column_dtype(name: str) -> np.dtype:
    return LABEL_DTYPE if name == "labels" else ID_DTYPE


class StoreColumn(BaseModel):
    """One column file: dtype (numpy `str`), shape [rows, *row shape], size and sha256."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    dtype: str
    shape: tuple[int, ...]
    bytes: int = Field(ge=0)
    sha256: str


class StoreManifest(BaseModel):
    """`store.json`: what a reader checks before it reads a row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int
    dataset: str
    rows: int = Field(ge=0)
    chunk_rows: int = Field(ge=1)
    schema_fingerprint: str
    tables_fingerprint: str
    columns: dict[str, StoreColumn]
    details: dict[str, object] = Field(default_factory=dict)


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A .npy 1.0 header for a C-order array, padded with spaces to NPY_HEADER_BYTES."""
    text = repr(
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    body_bytes = NPY_HEADER_BYTES - _NPY_PREFIX_BYTES
    if len(text) + 1 > body_bytes:
        raise StoreError(f"npy header {text} does not fit in {NPY_HEADER_BYTES} bytes")
    body = text.ljust(body_bytes - 1).encode("latin1") + b"\n"
    return _NPY_MAGIC + len(body).to_bytes(2, "little") + body


def read_npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, offset of the first row) of a C-order .npy file, via numpy's own parser."""
    with path.open("rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
        except (ValueError, SyntaxError) as exc:
            raise StoreError(f"{path}: not a .npy file ({exc})") from exc
        if fortran_order:
            raise StoreError(f"{path}: Fortran-order column, expected C order")
        return dtype, tuple(shape), handle.tell()


def _write_rows(handle: BinaryIO, row: int, array: np.ndarray) -> None:
    """Write `array` (C order) over rows `row`.. of a column file (positioned, no seek state)."""
    data = array.data.cast("B")
    offset = NPY_HEADER_BYTES + row * (array.nbytes // max(array.shape[0], 1))
    written = 0
    while written < data.nbytes:
        written += os.pwrite(handle.fileno(), data[written:], offset + written)


def _read_rows(handle: BinaryIO, row: int, out: np.ndarray, origin: Path) -> np.ndarray:
    """Fill `out` [n, ...] with rows `row`..`row + n` of a column file; `out` back."""
    view = out.data.cast("B")
    offset = NPY_HEADER_BYTES + row * (out.nbytes // max(out.shape[0], 1))
    filled = 0
    while filled < view.nbytes:
        got = os.preadv(handle.fileno(), [view[filled:]], offset + filled)
        if not got:
            raise StoreError(f"{origin}: truncated at row {row}")
        filled += got
    return out


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
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
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
                name: _read_rows(
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
            _write_rows(
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
            _check_column(path, name, manifest, (manifest.rows, *row_shape), verify=verify)
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
                columns[name] = _read_rows(handle, start, out, file)
        return SampleRows(**columns)

    def samples(
        self, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1
    ) -> StoreSamples:
        """This store as a training sample source (see `StoreSamples`)."""
        return StoreSamples(self, batch_size, seed, rank=rank, world_size=world_size)


def _check_column(
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


class StoreSamples:
    """A store as training batches: per epoch, chunks in a shuffled order, rows shuffled within
    each chunk, one chunk in memory at a time.

    The order of epoch e comes from `np.random.default_rng((seed, e))`, so any epoch can be read
    alone and every rank draws the same one. Under torchrun (`world_size` > 1) every rank reads
    each chunk and keeps its `rank_shard` of the chunk's permutation: each sample lands on
    exactly one rank per epoch (up to the padding of each chunk to a multiple of `world_size`),
    and every rank runs `steps_per_epoch` steps, as DDP needs. Batches are `batch_size` rows
    (per rank) and run across chunk boundaries; only an epoch's last batch is shorter.

    Memory: one chunk (`chunk_rows` rows of every column), the rows of one batch carried into the
    next chunk, and the batch itself; not the store.
    """

    def __init__(
        self, store: SampleStore, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        self.store = store
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.largest_read_rows = 0  # the most rows one read has materialised (observable)

    @property
    def rows_per_epoch(self) -> int:
        """Rows this rank trains on per epoch: each chunk's share, padded to equal shares."""
        return sum(
            math.ceil((stop - start) / self.world_size)
            for start, stop in map(self.store.chunk_bounds, range(self.store.num_chunks))
        )

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.rows_per_epoch / self.batch_size)

    def _segments(self, epoch: int) -> Iterator[tuple[int, np.ndarray, bool]]:
        """(chunk, rows within the chunk in training order, whether a batch ends with them),
        in the order of epoch `epoch`; a batch is made of one or two consecutive segments."""
        rng = np.random.default_rng((self.seed, epoch))
        remaining, filled = self.rows_per_epoch, 0
        for chunk in rng.permutation(self.store.num_chunks):
            start, stop = self.store.chunk_bounds(int(chunk))
            order = rng.permutation(stop - start)
            mine = order if self.world_size == 1 else rank_shard(order, self.rank, self.world_size)
            position = 0
            while position < mine.size:
                take = min(self.batch_size - filled, mine.size - position)
                filled += take
                remaining -= take
                ends = filled == self.batch_size or remaining == 0
                yield int(chunk), mine[position : position + take], ends
                position += take
                if ends:
                    filled = 0

    def epoch_rows(self, epoch: int) -> Iterator[np.ndarray]:
        """Store row indices of each batch of epoch `epoch`, [B] int64 (reads no data)."""
        pending: list[np.ndarray] = []
        for chunk, rows, ends in self._segments(epoch):
            pending.append(rows + self.store.chunk_bounds(chunk)[0])
            if ends:
                yield np.concatenate(pending)
                pending = []

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch` (the rows of `epoch_rows(epoch)`), reading one chunk at
        a time."""
        loaded, rows = -1, None
        pending: list[SampleRows] = []
        for chunk, positions, ends in self._segments(epoch):
            if chunk != loaded:
                rows = None  # release the previous chunk before reading the next
                start, stop = self.store.chunk_bounds(chunk)
                rows = self.store.read_rows(start, stop)
                self.largest_read_rows = max(self.largest_read_rows, stop - start)
                loaded = chunk
            assert rows is not None
            pending.append(rows.take(positions))
            if ends:
                part = pending[0] if len(pending) == 1 else SampleRows.concat(pending)
                pending = []
                yield part.gather(self.store.tables.user_features, self.store.tables.item_features)


def write_split_store(
    data: InteractionData,
    split: str,
    path: Path,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    shuffle_seed: int | None = None,
) -> SampleStore:
    """The samples of `data.splits[split]` as a store at `path`, written `chunk_rows` rows at a
    time: in the split's order (row i is sample `data.splits[split][i]`), or with `shuffle_seed`
    in the order of `np.random.default_rng(shuffle_seed).permutation(data.splits[split])`."""
    indices = data.splits[split]
    if shuffle_seed is not None:
        indices = np.random.default_rng(shuffle_seed).permutation(indices)
    with SampleStoreWriter(
        path,
        FeatureTables.of(data),
        dataset=data.name,
        chunk_rows=chunk_rows,
        sample_user_features=data.sample_user_features is not None,
        sample_item_features=data.sample_item_features is not None,
        details={
            "split": split,
            "dataset_fingerprint": data.fingerprint(),
            "shuffle_seed": shuffle_seed,
        },
    ) as writer:
        for start in range(0, indices.size, chunk_rows):
            writer.append(SampleRows.of(data, indices[start : start + chunk_rows]))
        return writer.commit()


# Independent random streams of `shuffle_store` (SeedSequence entropy: (seed, stream, index)).
_BUCKET_STREAM, _WITHIN_BUCKET_STREAM = 0, 1


def shuffle_store(
    source: SampleStore, path: Path, seed: int, *, details: dict[str, object] | None = None
) -> SampleStore:
    """A copy of `source` at `path` with its rows in a uniformly random order, in two passes
    that hold about one chunk each (Rao and Sandelius' shuffle).

    `StoreSamples` shuffles rows only within a chunk, so a store must not keep related rows
    together (e.g. user by user, as generators write them): its batches would then come from a
    few users each. Pass 1 sends every row to one of K buckets uniformly at random (K = the
    chunk count, so a bucket is about a chunk), the buckets laid end to end, so each source
    chunk is written as at most K contiguous runs; pass 2 reads each bucket, permutes it and
    writes it back in place. Random buckets followed by a uniform shuffle of each give every
    order of the rows the same probability.
    """
    buckets = max(source.num_chunks, 1)

    def bucket_of_rows(chunk: int) -> np.ndarray:
        start, stop = source.chunk_bounds(chunk)
        rng = np.random.default_rng((seed, _BUCKET_STREAM, chunk))
        return rng.integers(buckets, size=stop - start)

    sizes = np.zeros(buckets, dtype=np.int64)
    for chunk in range(source.num_chunks):
        sizes += np.bincount(bucket_of_rows(chunk), minlength=buckets)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    columns = source.manifest.columns
    with SampleStoreWriter(
        path,
        source.tables,
        dataset=source.manifest.dataset,
        chunk_rows=source.chunk_rows,
        sample_user_features="sample_user_features" in columns,
        sample_item_features="sample_item_features" in columns,
        details={**source.manifest.details, "shuffle_seed": seed, **(details or {})},
        rows=source.rows,
    ) as writer:
        cursor = starts.copy()
        for chunk in range(source.num_chunks):
            rows = source.read_rows(*source.chunk_bounds(chunk))
            bucket = bucket_of_rows(chunk)
            grouped = np.argsort(bucket, kind="stable")
            bounds = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=buckets))])
            for target in np.flatnonzero(np.diff(bounds)).tolist():
                run = rows.take(grouped[bounds[target] : bounds[target + 1]])
                writer.write_at(int(cursor[target]), run)
                cursor[target] += len(run)
            del rows
        if not np.array_equal(cursor, ends):
            raise RuntimeError(f"{path}: buckets filled to {cursor.tolist()}, not {ends.tolist()}")
        for b in range(buckets):
            start, stop = int(starts[b]), int(ends[b])
            order = np.random.default_rng((seed, _WITHIN_BUCKET_STREAM, b)).permutation(
                stop - start
            )
            writer.write_at(start, writer.read_at(start, stop).take(order))
        return writer.commit()
