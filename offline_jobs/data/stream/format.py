"""The on-disk format of a sample store: a directory of `.npy` columns, one row per sample in
the order the rows were written, and a manifest, `store.json`.

| column | dtype | shape |
|---|---|---|
| `user_ids`, `item_ids`, `timestamps` | int64 | `[n]` |
| `labels` | float32 | `[n]` |
| `histories` | int64 | `[n, L]` |
| `sample_user_features`, `sample_item_features` (optional) | int64 | `[n, S_u]`, `[n, S_i]` |

The manifest records the row count, the chunk size, each column's dtype, shape, size and sha256,
the feature schema's fingerprint and a fingerprint of the feature tables the ids index into.

Columns are written and read with plain positioned file I/O, not through a memory map: pages of a
mapped file count in the reading process's resident memory for as long as the map is held, so a
reader mapping a 10 GB store would look 10 GB large after one epoch. The files are ordinary
`.npy` files all the same (`np.load(path, mmap_mode="r")` maps them).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from offline_jobs.data.dataset import InteractionData
from prerank_contract.features import FeatureSchema

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


def write_rows(handle: BinaryIO, row: int, array: np.ndarray) -> None:
    """Write `array` (C order) over rows `row`.. of a column file (positioned, no seek state)."""
    data = array.data.cast("B")
    offset = NPY_HEADER_BYTES + row * (array.nbytes // max(array.shape[0], 1))
    written = 0
    while written < data.nbytes:
        written += os.pwrite(handle.fileno(), data[written:], offset + written)


def read_rows(handle: BinaryIO, row: int, out: np.ndarray, origin: Path) -> np.ndarray:
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
