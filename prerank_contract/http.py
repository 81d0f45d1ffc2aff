"""The HTTP contract of /prerank beyond its request body: the deadline header, and the answer with
its one encoder (the service's and the benchmark's echo floor's; `service.schemas` documents it
for OpenAPI)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import orjson

from prerank_contract.traffic import Arm

WORKER_HEADER = "x-prerank-worker"  # which worker process answered (PRERANK_WORKERS > 1)
DEADLINE_HEADER = "x-prerank-deadline-ms"  # the caller's deadline, milliseconds after arrival

UserSource = Literal["request", "feature_store", "cold_start"]
DegradedReason = Literal["feature_store", "feature_store_lost", "deadline"]


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
) -> bytes:
    """The JSON bytes of one /prerank answer (`service.schemas.PrerankResponse`).

    item_ids [k], scores [k] and, with `explain`, meta_index [k]: the scored items, best first;
    unknown_ids [u] and duplicate_ids [r]: the candidates reported apart.
    """
    return orjson.dumps(
        {
            "model_version": model_version,
            "arm": arm,
            "items": _scored_items(item_ids, scores, meta_index),
            "unknown_items": unknown_ids.tolist(),
            "duplicate_items": duplicate_ids.tolist(),
            "user_source": user_source,
            "cold_start": user_source == "cold_start",
            "degraded": bool(degraded_reasons),
            "degraded_reasons": list(degraded_reasons),
        }
    )


def _scored_items(
    item_ids: np.ndarray, scores: np.ndarray, meta_index: np.ndarray | None
) -> list[dict[str, float | int]]:
    if meta_index is None:
        return [
            {"item_id": i, "score": s}
            for i, s in zip(item_ids.tolist(), scores.tolist(), strict=True)
        ]
    return [
        {"item_id": i, "score": s, "meta_index": m}
        for i, s, m in zip(item_ids.tolist(), scores.tolist(), meta_index.tolist(), strict=True)
    ]
