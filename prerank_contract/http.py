"""The HTTP contract of /prerank beyond its request body: the deadline header, the wire formats a
caller may pick by Content-Type and Accept, and the answer with its one encoder per format (the
service's and the benchmark's echo floor's; `service.schemas` documents them for OpenAPI)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import msgpack
import numpy as np
import orjson

from prerank_contract.traffic import Arm

WORKER_HEADER = "x-prerank-worker"  # which worker process answered (PRERANK_WORKERS > 1)
DEADLINE_HEADER = "x-prerank-deadline-ms"  # the caller's deadline, milliseconds after arrival

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"
# The older, unregistered spelling, still what many MessagePack clients send.
MSGPACK_TYPES = (MSGPACK_TYPE, "application/x-msgpack")
# A vendor subtype with the structured-syntax suffix: JSON tools still read it as JSON, while the
# name says the items are two parallel arrays rather than `application/json`'s list of objects.
COLUMNAR_JSON_TYPE = "application/vnd.prerank.columnar+json"

# The columnar answer's parallel arrays (MessagePack and columnar JSON), best first.
ITEM_IDS = "item_ids"
SCORES = "scores"
META_INDEX = "meta_index"  # only with `explain`

BodyFormat = Literal["json", "msgpack"]
AnswerFormat = Literal["json", "columnar_json", "msgpack"]
ANSWER_TYPES: dict[AnswerFormat, str] = {
    "json": JSON_TYPE,
    "columnar_json": COLUMNAR_JSON_TYPE,
    "msgpack": MSGPACK_TYPE,
}

UserSource = Literal["request", "feature_store", "cold_start"]
DegradedReason = Literal["feature_store", "feature_store_lost", "deadline"]

# MessagePack type bytes (msgpack spec "formats"): an array of up to 2**32 - 1 elements, and one
# element each written as a fixed-width big-endian int 64 / float 64, so a whole column is one
# numpy buffer. Decoders accept these wider-than-minimal encodings as the same values.
_MSGPACK_ARRAY32 = 0xDD
_MSGPACK_INT64 = 0xD3
_MSGPACK_FLOAT64 = 0xCB


def encode_answer(
    *,
    model_version: str,
    arm: Arm,
    item_ids: np.ndarray,
    scores: np.ndarray,
    meta_index: np.ndarray | None,
    unknown_ids: np.ndarray,
    duplicate_ids: np.ndarray,
    user_source: UserSource,
    degraded_reasons: Sequence[DegradedReason],
    answer_format: AnswerFormat = "json",
) -> bytes:
    """The bytes of one /prerank answer in `answer_format` (`service.schemas.PrerankResponse`,
    or `ColumnarPrerankResponse` for the columnar formats).

    item_ids [k] (int64, or unicode: the ids as the caller sent them), scores [k] float64 and,
    with `explain`, meta_index [k]: the scored items, best first; unknown_ids [u] and
    duplicate_ids [r]: the candidates reported apart.
    """
    head = {"model_version": model_version, "arm": arm}
    tail = {
        "unknown_items": unknown_ids.tolist(),
        "duplicate_items": duplicate_ids.tolist(),
        "user_source": user_source,
        "cold_start": user_source == "cold_start",
        "degraded": bool(degraded_reasons),
        "degraded_reasons": list(degraded_reasons),
    }
    if answer_format == "msgpack":
        return _msgpack_answer(head, item_ids, scores, meta_index, tail)
    if answer_format == "columnar_json":
        # orjson writes numeric arrays straight from their buffers; string ids go as a list
        ids = item_ids if item_ids.dtype.kind in "iu" else item_ids.tolist()
        columns = {ITEM_IDS: ids, SCORES: scores}
        if meta_index is not None:
            columns[META_INDEX] = meta_index
        return orjson.dumps({**head, **columns, **tail}, option=orjson.OPT_SERIALIZE_NUMPY)
    return orjson.dumps({**head, "items": _scored_items(item_ids, scores, meta_index), **tail})


def _msgpack_answer(
    head: Mapping[str, object],
    item_ids: np.ndarray,
    scores: np.ndarray,
    meta_index: np.ndarray | None,
    tail: Mapping[str, object],
) -> bytes:
    """A MessagePack map of `head`, the columns and `tail`, each column written from its numpy
    buffer: item_ids and meta_index as int 64, scores as float 64 (the JSON answer's floats
    exactly)."""
    columns = [
        (ITEM_IDS, item_ids, _MSGPACK_INT64, ">i8"),
        (SCORES, scores, _MSGPACK_FLOAT64, ">f8"),
    ]
    if meta_index is not None:
        columns.append((META_INDEX, meta_index, _MSGPACK_INT64, ">i8"))
    packer = msgpack.Packer()
    parts = [packer.pack_map_header(len(head) + len(columns) + len(tail))]
    parts.extend(packer.pack(key) + packer.pack(value) for key, value in head.items())
    for name, values, element_type, dtype in columns:
        if values.dtype.kind not in "iuf":  # string ids: one MessagePack str each
            parts.append(packer.pack(name) + packer.pack(values.tolist()))
            continue
        parts.append(packer.pack(name) + _msgpack_column(values, element_type, dtype))
    parts.extend(packer.pack(key) + packer.pack(value) for key, value in tail.items())
    return b"".join(parts)


def _msgpack_column(values: np.ndarray, element_type: int, dtype: str) -> bytes:
    """values [k] -> one MessagePack array of k fixed-width elements, built without a Python object
    per element."""
    elements = np.empty(values.size, dtype=[("type", "u1"), ("value", dtype)])
    elements["type"] = element_type
    elements["value"] = values
    header = bytes([_MSGPACK_ARRAY32]) + values.size.to_bytes(4, "big")
    return header + elements.tobytes()


def _scored_items(
    item_ids: np.ndarray, scores: np.ndarray, meta_index: np.ndarray | None
) -> list[dict[str, float | int | str]]:
    if meta_index is None:
        return [
            {"item_id": i, "score": s}
            for i, s in zip(item_ids.tolist(), scores.tolist(), strict=True)
        ]
    return [
        {"item_id": i, "score": s, "meta_index": m}
        for i, s, m in zip(item_ids.tolist(), scores.tolist(), meta_index.tolist(), strict=True)
    ]
