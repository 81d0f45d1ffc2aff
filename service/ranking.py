"""The request path: parse (and the user's arm) -> gather -> user features -> user tower ->
scorer -> top-k -> the answer's wire format. One request reads one `Serving` and is scored by the
one snapshot of its user's arm."""

from __future__ import annotations

import math
import time
from collections.abc import Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import msgpack
import numpy as np
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from prerank_contract.features import PADDING_INDEX
from prerank_contract.graphs import DTYPES, USER_FEATURES
from prerank_contract.http import (
    AnswerFormat,
    BodyFormat,
    DegradedReason,
    UserSource,
    encode_answer,
)
from prerank_contract.traffic import Arm
from service.feature_store import FeatureStore, FeatureStoreUnavailableError, UserRecord
from service.metrics import FALLBACK_STAGE, NO_ARM, Metrics
from service.schemas import PrerankRequest, request_errors
from service.snapshot import Snapshot
from service.state import Serving
from service.vocabulary import (
    FeatureValue,
    IdKind,
    RawId,
    VocabularyError,
    id_kind,
    raw_id_array,
)

INT32_MIN, INT32_MAX = int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max)


def invalid(field: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A 422 in FastAPI's own shape, naming the offending field of the body."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", *field), "msg": message}]
    )


@dataclass
class StageTimer:
    metrics: Metrics
    arm: str = NO_ARM

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.observe(name, time.perf_counter() - started)

    def observe(self, name: str, seconds: float) -> None:
        self.metrics.stage_seconds.labels(stage=name, arm=self.arm).observe(seconds)


@dataclass(frozen=True)
class Answer:
    """The bytes of a `PrerankResponse` (or its columnar form) and the arm that produced them."""

    payload: bytes
    arm: Arm


def loc_part(part: str | int | bytes) -> str | int:
    """A part of an error's location as JSON can carry it: a MessagePack map key may be binary."""
    return part.decode("utf-8", "backslashreplace") if isinstance(part, bytes) else part


def decode_msgpack(body: bytes) -> object:
    """A MessagePack body as Python values; one that is not MessagePack (or has a map key that is
    not a string) is a 422 at `["body"]`, as invalid JSON is."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RequestValidationError(
            [{"type": "msgpack_invalid", "loc": ("body",), "msg": f"Invalid MessagePack: {exc}"}]
        ) from exc


def parse_request(
    body: bytes, max_candidates: int, max_history: int, body_format: BodyFormat = "json"
) -> PrerankRequest:
    """The validated request, whichever the wire format: one model, one set of rules."""
    try:
        if body_format == "msgpack":
            request = PrerankRequest.model_validate(decode_msgpack(body))
        else:
            request = PrerankRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError(
            [
                {**error, "loc": ("body", *map(loc_part, error["loc"]))}
                for error in request_errors(map(dict, errors))
            ]
        ) from exc
    if len(request.candidates) > max_candidates:
        raise invalid(
            ("candidates",),
            f"{len(request.candidates)} candidates; at most "
            f"{max_candidates} per request (PRERANK_MAX_CANDIDATES)",
        )
    if request.history is not None and len(request.history) > max_history:
        raise invalid(("history",), f"{len(request.history)} behaviours; at most {max_history}")
    return request


def user_features_row(
    snapshot: Snapshot,
    user_id: RawId,
    stored: Mapping[str, FeatureValue],
    given: Mapping[str, FeatureValue],
) -> np.ndarray:
    """The [1, S_u] int64 profile row: request fields over stored ones over padding, each raw
    value encoded by the version's vocabularies.

    The request's own fields are checked (422 naming the field); a stored value this version
    cannot read stays missing. The user id field takes the request's user id (the unknown index
    when outside the vocabulary)."""
    schema, codec = snapshot.manifest.feature_schema, snapshot.vocabulary
    ranges = schema.slot_ranges("user")
    row = np.full((1, schema.user_slots), PADDING_INDEX, DTYPES[USER_FEATURES])
    for name in given:
        if name not in ranges:
            raise invalid(("user_features", name), f"unknown user field; known: {sorted(ranges)}")
    for name, value in {**stored, **given}.items():
        if name not in ranges:
            continue
        try:
            indices = codec.encode_feature(name, value, ("user_features", name))
        except VocabularyError as exc:
            if name in given:
                raise invalid(exc.field, str(exc)) from exc
            continue
        start, _ = ranges[name]
        row[0, start : start + len(indices)] = indices
    id_field = codec.user_id_field
    if id_field in ranges and id_field not in given:
        row[0, ranges[id_field][0]] = codec.user_index(user_id)
    return row


def resolve_user(
    request: PrerankRequest,
    store: FeatureStore,
    store_id: str,
    deadline: float = math.inf,
) -> tuple[UserRecord | None, UserSource, bool]:
    """(stored record or None, where the features come from, degraded). The read waits until
    `deadline` at most: one cut short by it is a feature-store failure, a degraded answer."""
    degraded = False
    try:
        record = store.get(store_id, request.user_id, deadline)
    except FeatureStoreUnavailableError:
        record, degraded = None, True
    given = request.user_features is not None or request.history is not None
    source: UserSource = "feature_store" if record else "request" if given else "cold_start"
    return record, source, degraded


def checked_ids(ids: Sequence[RawId], expected: IdKind, field: str) -> np.ndarray:
    """A request's id list as one array [n] (int64 or unicode); a 422 naming `field` when its
    ids are not of the kind the serving version's are."""
    sent = id_kind(ids)
    if sent is not None and sent != expected:
        raise invalid((field,), f"{sent} ids, but the serving version's item ids are {expected}s")
    return raw_id_array(ids)


def check_user_id(user_id: RawId, expected: IdKind) -> None:
    sent = id_kind([user_id])
    if sent != expected:
        article = "an" if sent == "integer" else "a"
        raise invalid(
            ("user_id",), f"{article} {sent} id, but the serving version's user ids are {expected}s"
        )


def id_keys(raw: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """[n] int64 keys, equal exactly where the raw ids [n] are: an id's index where the
    vocabulary knows it, else a negative number per distinct unknown id."""
    unknown = indices == PADDING_INDEX
    if not unknown.any():
        return indices
    _, inverse = np.unique(raw[unknown], return_inverse=True)
    keys = indices.copy()
    keys[unknown] = -1 - inverse
    return keys


def narrowest_keys(keys: np.ndarray) -> np.ndarray:
    """int64 keys [n] as int32 when every one fits (equal exactly where the keys are), else as
    they are."""
    if keys.size and keys.min() >= INT32_MIN and keys.max() <= INT32_MAX:
        return keys.astype(np.int32)
    return keys


def first_occurrences(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """keys [n] -> (the position of each key's first occurrence, in first-seen order [m]; the
    first position of each key seen more than once, in key order [r]).

    Most requests repeat no id: one sort finds that before `np.unique` (470 us at 5,000 keys) is
    paid. Keys that fit in 32 bits are sorted as such: numpy sorts 5,000 random int32 keys in
    57 us, int64 ones in 106 (its SIMD quicksort; a stable sort took 175)."""
    ordered = np.sort(narrowest_keys(keys))
    if not (ordered[1:] == ordered[:-1]).any():
        return np.arange(keys.size), np.zeros(0, np.int64)
    _, first_seen, counts = np.unique(keys, return_index=True, return_counts=True)
    return np.sort(first_seen), first_seen[counts > 1]


def deduplicate(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """candidates [n] int64 -> (each id once, in first-seen order [m]; the repeated ids, sorted)."""
    positions, repeated = first_occurrences(candidates)
    return candidates[positions], candidates[repeated]


def best_first(logits: np.ndarray, top_k: int | None) -> np.ndarray:
    """logits [n] -> the row order of the best `top_k` (all when None), best first: a partial
    sort, then an introsort of those k: faster than a stable sort, and equal logits need no
    fixed order."""
    k = logits.size if top_k is None else min(top_k, logits.size)
    best = np.argpartition(-logits, k - 1)[:k] if 0 < k < logits.size else np.arange(k)
    return best[np.argsort(-logits[best])]


def rank(
    body: bytes,
    serving: Serving,
    store: FeatureStore,
    metrics: Metrics,
    max_candidates: int,
    max_history: int,
    deadline: float = math.inf,
    lost_stores: Container[str] = frozenset(),
    body_format: BodyFormat = "json",
    answer_format: AnswerFormat = "json",
) -> Answer:
    """Answer one /prerank body. `deadline` (time.perf_counter seconds) is checked before the
    feature read, the user tower and the scorer, and bounds the feature read's wait: once past it,
    the known candidates are put in the snapshot's precomputed fallback order and the answer is
    flagged degraded. `lost_stores`: the feature stores (their ids) Redis lost
    (`ServiceState.loss`); an answer of a model of one is flagged degraded, `feature_store_lost`.
    `body_format` and `answer_format`: the wire formats of the body and of the answer."""
    timer = StageTimer(metrics)
    started = time.perf_counter()
    request = parse_request(body, max_candidates, max_history, body_format)
    snapshot, arm = serving.pick(request.user_id)
    codec = snapshot.vocabulary
    check_user_id(request.user_id, codec.user_id_kind)
    raw = checked_ids(request.candidates, codec.item_id_kind, "candidates")
    timer.arm = arm
    timer.observe("parse", time.perf_counter() - started)
    metrics.candidates.labels(arm=arm).observe(raw.size)
    reasons: list[DegradedReason] = []
    if snapshot.manifest.feature_store in lost_stores:
        reasons.append("feature_store_lost")  # every record is gone: users read as cold starts
    with timer.stage("gather"):
        indices = codec.item_indices(raw)
        keys = raw if codec.items is None else id_keys(raw, indices)
        positions, repeated = first_occurrences(keys)
        rows, known = snapshot.lookup(indices[positions])
        items = snapshot.gather(rows[known])
        known_ids = raw[positions[known]]
        unknown_ids = raw[positions[~known]]
    metrics.unknown_items.labels(arm=arm).inc(int(unknown_ids.size))
    source: UserSource = "cold_start"  # what the fallback order assumes
    logits = np.zeros(0, dtype=np.float32)
    if time.perf_counter() < deadline:  # a request queued past its deadline reads nothing more
        with timer.stage("features"):
            user_row, history, source, store_failed = user_inputs(
                request, snapshot, store, deadline
            )
        if store_failed:
            reasons.append("feature_store")
        if known_ids.size and time.perf_counter() < deadline:
            with timer.stage("user_tower"):
                user_heads = snapshot.encode_user(user_row, history)
            if time.perf_counter() < deadline:
                with timer.stage("scorer"):
                    logits = snapshot.score(user_heads, items)
    if logits.size != known_ids.size:
        reasons.append("deadline")
        with timer.stage(FALLBACK_STAGE):
            logits = snapshot.fallback_logits[rows[known]]
    metrics.user_source.labels(source=source, arm=arm).inc()
    for reason in reasons:
        metrics.degraded.labels(reason=reason, arm=arm).inc()
    with timer.stage("topk"):
        best = best_first(logits, request.top_k)
        scores = 1.0 / (1.0 + np.exp(-logits[best].astype(np.float64)))
    with timer.stage("serialize"):
        payload = encode_answer(
            model_version=snapshot.version,
            arm=arm,
            item_ids=known_ids[best],
            scores=scores,
            meta_index=items.meta_index[best] if request.explain else None,
            unknown_ids=unknown_ids,
            duplicate_ids=np.sort(raw[repeated]),
            user_source=source,
            degraded_reasons=reasons,
            answer_format=answer_format,
        )
    return Answer(payload, arm)


def user_inputs(
    request: PrerankRequest, snapshot: Snapshot, store: FeatureStore, deadline: float = math.inf
) -> tuple[np.ndarray, np.ndarray, UserSource, bool]:
    """The user tower's inputs ([1, S_u], [1, L, S_i]), where they came from, and whether the
    feature store failed (or did not answer before `deadline`)."""
    record, source, store_failed = resolve_user(
        request, store, snapshot.manifest.feature_store, deadline
    )
    stored = record or {"features": {}, "history": []}
    user_row = user_features_row(
        snapshot, request.user_id, stored["features"], request.user_features or {}
    )
    codec = snapshot.vocabulary
    if request.history is not None:
        history_ids = checked_ids(request.history, codec.item_id_kind, "history")
    elif id_kind(stored["history"]) in (None, codec.item_id_kind):
        history_ids = raw_id_array(stored["history"])
    else:  # a record written for ids of another kind: nothing of it can be read
        history_ids = np.zeros(0, np.int64)
    history = snapshot.history_features(codec.item_indices(history_ids))
    return user_row, history, source, store_failed
