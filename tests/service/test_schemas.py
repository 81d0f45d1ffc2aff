"""Property tests of the /prerank contract: `PrerankRequest` and `parse_request`, the one parser of
a /prerank body (any input either parses or is a 422 naming a field of the body), and
`encode_answer`, the one writer of its answer, against `PrerankResponse`."""

from __future__ import annotations

import json
from typing import Any, get_args

import numpy as np
import orjson
import pytest
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prerank_contract.http import DegradedReason, UserSource, encode_answer
from prerank_contract.traffic import Arm
from service.ranking import parse_request
from service.schemas import INT64_MAX, INT64_MIN, MAX_ID_CHARS, PrerankRequest, PrerankResponse

MAX_CANDIDATES = 20
MAX_HISTORY = 10
FIELDS = tuple(PrerankRequest.model_fields)

# Deterministic and bounded: CI sees the same examples every run, in a few seconds.
PROPERTY = settings(max_examples=150, derandomize=True, deadline=None, database=None)

int64 = st.integers(INT64_MIN, INT64_MAX)
beyond_int64 = st.integers(INT64_MAX + 1, 2**70) | st.integers(-(2**70), INT64_MIN - 1)
string_id = st.text(min_size=1, max_size=12)
raw_value = (
    st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
feature_value = raw_value | st.lists(raw_value, max_size=4)
not_an_int = (
    st.text(max_size=5) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans()
) | st.none()
# Neither an int64 nor a string id: what no id field takes.
not_an_id = (
    st.just("")
    | st.text(min_size=MAX_ID_CHARS + 1, max_size=MAX_ID_CHARS + 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none()
)


def id_lists(max_size: int) -> st.SearchStrategy[list[int] | list[str]]:
    """All integers or all strings: a list holds ids of one kind."""
    return st.lists(int64, max_size=max_size) | st.lists(string_id, max_size=max_size)


valid_requests = st.builds(
    PrerankRequest,
    user_id=int64 | string_id,
    user_features=st.none() | st.dictionaries(st.text(max_size=8), feature_value, max_size=4),
    history=st.none() | id_lists(MAX_HISTORY),
    candidates=id_lists(MAX_CANDIDATES),
    top_k=st.none() | st.integers(1, INT64_MAX),
    explain=st.booleans(),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# Objects with the request's own keys reach the field validators, not only the top-level checks.
request_like = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=4), json_values)


def body(value: object) -> bytes:
    """JSON as Python writes it: NaN and +-inf become the non-standard NaN/Infinity tokens."""
    return json.dumps(value).encode()


def rejection(raw: bytes) -> list[dict[str, Any]]:
    """The errors of the 422 that `parse_request` raises for `raw` (fails if it parses)."""
    with pytest.raises(RequestValidationError) as raised:
        parse_request(raw, MAX_CANDIDATES, MAX_HISTORY)
    errors = list(raised.value.errors())
    assert errors
    return errors


def parses_or_names_the_body(raw: bytes) -> None:
    """`raw` parses, or raises only RequestValidationError, every error located in the body and
    serialisable the way FastAPI's 422 handler writes it."""
    try:
        parsed = parse_request(raw, MAX_CANDIDATES, MAX_HISTORY)
    except RequestValidationError as exc:
        errors = list(exc.errors())
        assert errors
        assert all(tuple(error["loc"])[:1] == ("body",) for error in errors), errors
        json.dumps(jsonable_encoder({"detail": errors}), allow_nan=False)
    else:
        assert isinstance(parsed, PrerankRequest)


def locs(errors: list[dict[str, Any]]) -> list[tuple[str | int, ...]]:
    return [tuple(error["loc"]) for error in errors]


@PROPERTY
@given(request=valid_requests)
def test_a_valid_request_round_trips(request: PrerankRequest) -> None:
    """model_dump_json -> parse_request gives back an equal request."""
    assert parse_request(request.model_dump_json().encode(), MAX_CANDIDATES, MAX_HISTORY) == request


@PROPERTY
@given(request=valid_requests)
def test_defaults_may_be_left_out(request: PrerankRequest) -> None:
    """Only user_id and candidates are required; left-out fields take their defaults."""
    sparse = request.model_dump_json(exclude_defaults=True).encode()
    assert parse_request(sparse, MAX_CANDIDATES, MAX_HISTORY) == request


@PROPERTY
@given(value=json_values | request_like)
@example(value={"user_id": 1, "candidates": [1], "user_features": {"age": float("nan")}})
@example(value={"user_id": float("inf"), "candidates": [float("-inf")]})
@example(value=[{"user_id": 1, "candidates": []}])
def test_any_json_parses_or_is_a_body_422(value: object) -> None:
    """Arbitrary JSON (NaN/Infinity tokens included) never escapes as another exception."""
    parses_or_names_the_body(body(value))


@PROPERTY
@given(raw=st.binary(max_size=64))
@example(raw=b"")
@example(raw=b"\xff\xfe{")
@example(raw=b'{"user_id": 1, "candidates": [1]')
@example(raw=b'{"user_id": 1, "candidates": [1]} trailing')
@example(raw=b'{"user_id": 1, "candidates": ' + b"[" * 10_000 + b"]" * 10_000 + b"}")
@example(raw=b'{"user_id": 1, "candidates": [' + b"9" * 5_000 + b"]}")
@example(raw=b'\xef\xbb\xbf{"user_id": 1, "candidates": []}')
def test_any_bytes_parse_or_are_a_body_422(raw: bytes) -> None:
    """Arbitrary bytes (invalid UTF-8, a BOM, truncated, trailing or deeply nested JSON, a number
    of 5,000 digits) are a 422 located at the body."""
    parses_or_names_the_body(raw)


@PROPERTY
@given(value=not_an_id)
def test_a_user_id_neither_int64_nor_a_string_id_is_rejected_naming_it(value: object) -> None:
    """Floats (even 1.0), bools, null, an empty string and one over 256 characters are not ids:
    the 422 names the field."""
    errors = rejection(body({"user_id": value, "candidates": []}))
    assert locs(errors) == [("body", "user_id")]


@PROPERTY
@given(value=not_an_int.filter(lambda value: value is not None))
def test_top_k_of_another_type_is_rejected_naming_it(value: object) -> None:
    errors = rejection(body({"user_id": 1, "candidates": [], "top_k": value}))
    assert locs(errors) == [("body", "top_k")]


@PROPERTY
@given(
    value=not_an_id,
    field=st.sampled_from(["candidates", "history"]),
    ids=id_lists(5),
    position=st.integers(0, 5),
)
def test_a_listed_value_that_is_no_id_is_rejected_naming_its_index(
    value: object, field: str, ids: list[int] | list[str], position: int
) -> None:
    """A value that is no id, among integer or string ids, is a 422 naming `[field, index]`."""
    index = min(position, len(ids))
    ids.insert(index, value)  # type: ignore[arg-type]
    request = {"user_id": 1, "candidates": [1], field: ids}
    assert locs(rejection(body(request))) == [("body", field, index)]


@PROPERTY
@given(
    field=st.sampled_from(["candidates", "history"]),
    ints=st.lists(int64, min_size=1, max_size=5),
    strings=st.lists(string_id, min_size=1, max_size=5),
    position=st.integers(1, 5),
    strings_first=st.booleans(),
)
def test_a_list_mixing_integer_and_string_ids_is_rejected_at_the_first_odd_one(
    field: str, ints: list[int], strings: list[str], position: int, strings_first: bool
) -> None:
    """The first id sets the list's kind: the 422 names the first id of the other kind."""
    ids: list[int | str] = [*strings] if strings_first else [*ints]
    odd: list[int | str] = [*ints] if strings_first else [*strings]
    index = min(position, len(ids))
    ids.insert(index, odd[0])
    request = {"user_id": 1, "candidates": [1], field: ids}
    assert locs(rejection(body(request))) == [("body", field, index)]


@PROPERTY
@given(user_id=string_id, candidates=st.lists(string_id, max_size=MAX_CANDIDATES))
def test_string_ids_parse_as_sent(user_id: str, candidates: list[str]) -> None:
    raw = body({"user_id": user_id, "candidates": candidates, "history": candidates[:3]})
    parsed = parse_request(raw, MAX_CANDIDATES, MAX_HISTORY)
    assert (parsed.user_id, parsed.candidates, parsed.history) == (
        user_id,
        candidates,
        candidates[:3],
    )


@PROPERTY
@given(value=beyond_int64, field=st.sampled_from(["candidates", "history"]))
@example(value=INT64_MAX + 1, field="candidates")
@example(value=INT64_MIN - 1, field="history")
def test_an_item_id_beyond_int64_is_rejected_naming_it(value: int, field: str) -> None:
    """Item ids must fit the int64 the model is indexed by."""
    errors = rejection(body({"user_id": 1, "candidates": [7], field: [7, value]}))
    assert locs(errors) == [("body", field, 1)]


@PROPERTY
@given(value=beyond_int64)
@example(value=INT64_MAX + 1)
@example(value=INT64_MIN - 1)
def test_a_user_id_outside_int64_is_rejected(value: int) -> None:
    errors = rejection(body({"user_id": value, "candidates": []}))
    assert locs(errors) == [("body", "user_id")]


@pytest.mark.parametrize("edge", [INT64_MIN, 0, INT64_MAX, "u", "x" * MAX_ID_CHARS])
def test_user_id_bounds_are_inclusive(edge: int) -> None:
    assert parse_request(body({"user_id": edge, "candidates": []}), 1, 1).user_id == edge


@pytest.mark.parametrize("edge", [INT64_MIN, INT64_MAX])
def test_item_id_bounds_are_inclusive(edge: int) -> None:
    parsed = parse_request(body({"user_id": 1, "candidates": [edge], "history": [edge]}), 1, 1)
    assert parsed.candidates == [edge] and parsed.history == [edge]


@PROPERTY
@given(
    value=st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    as_list=st.booleans(),
    name=st.text(min_size=1, max_size=8),
)
def test_nan_or_infinity_in_user_features_is_a_422_naming_the_field(
    value: float, as_list: bool, name: str
) -> None:
    """Python's json writes NaN/Infinity tokens; pydantic reads them as floats and rejects them
    (a numeric value must be finite), so the 422 names `user_features.<name>` (never a 500, never
    a silent accept)."""
    raw = body(
        {"user_id": 1, "candidates": [1], "user_features": {name: [value] if as_list else value}}
    )
    assert b"NaN" in raw or b"Infinity" in raw
    errors = rejection(raw)
    assert all(loc[:3] == ("body", "user_features", name) for loc in locs(errors))


@PROPERTY
@given(
    field=st.sampled_from(["candidates", "history"]),
    extra=st.integers(1, 30),
)
def test_more_ids_than_the_limit_is_a_422_naming_the_list(field: str, extra: int) -> None:
    """PRERANK_MAX_CANDIDATES and PRERANK_MAX_REQUEST_HISTORY bound the lists; the limit itself
    is accepted."""
    limit = MAX_CANDIDATES if field == "candidates" else MAX_HISTORY
    at_limit = {"user_id": 1, "candidates": [], field: list(range(limit))}
    assert len(getattr(parse_request(body(at_limit), MAX_CANDIDATES, MAX_HISTORY), field)) == limit
    over = {"user_id": 1, "candidates": [], field: list(range(limit + extra))}
    (error,) = rejection(body(over))
    assert tuple(error["loc"]) == ("body", field)
    assert f"at most {limit}" in error["msg"]


@PROPERTY
@given(name=st.text(max_size=8).filter(lambda name: name not in FIELDS), value=json_values)
def test_an_unknown_field_is_rejected_naming_it(name: str, value: object) -> None:
    errors = rejection(body({"user_id": 1, "candidates": [], name: value}))
    assert locs(errors) == [("body", name)]


@pytest.mark.parametrize("value", [0, 1, "true", None])
def test_explain_is_a_strict_bool(value: object) -> None:
    errors = rejection(body({"user_id": 1, "candidates": [], "explain": value}))
    assert locs(errors) == [("body", "explain")]


@pytest.mark.parametrize("value", [0, -1])
def test_top_k_is_at_least_one(value: int) -> None:
    errors = rejection(body({"user_id": 1, "candidates": [], "top_k": value}))
    assert locs(errors) == [("body", "top_k")]


ids = st.lists(int64, max_size=6)


@PROPERTY
@given(
    string_ids=st.booleans(),
    scored=st.lists(st.tuples(int64, st.floats(0, 1), st.integers(0, 63)), max_size=6),
    explain=st.booleans(),
    unknown=ids,
    duplicates=ids,
    arm=st.sampled_from(get_args(Arm)),
    source=st.sampled_from(get_args(UserSource)),
    reasons=st.lists(st.sampled_from(get_args(DegradedReason)), unique=True),
)
def test_the_answer_encoder_writes_what_the_response_schema_documents(
    string_ids: bool,
    scored: list[tuple[int, float, int]],
    explain: bool,
    unknown: list[int],
    duplicates: list[int],
    arm: Arm,
    source: UserSource,
    reasons: list[DegradedReason],
) -> None:
    """Every answer `encode_answer` writes validates as a `PrerankResponse`, which holds every
    field of it (string ids as strings): the OpenAPI document describes the answers the service
    sends."""
    meta_index = np.array([cluster for _, _, cluster in scored], dtype=np.int64)

    def as_sent(values: list[int]) -> np.ndarray:
        return np.array([f"B{v}" for v in values], np.str_) if string_ids else np.array(values)

    payload = encode_answer(
        model_version="v1",
        arm=arm,
        item_ids=as_sent([item_id for item_id, _, _ in scored]).astype(
            np.str_ if string_ids else np.int64
        ),
        scores=np.array([score for _, score, _ in scored], dtype=np.float64),
        meta_index=meta_index if explain else None,
        unknown_ids=as_sent(unknown),
        duplicate_ids=as_sent(duplicates),
        user_source=source,
        degraded_reasons=reasons,
    )
    parsed = PrerankResponse.model_validate_json(payload)
    assert parsed.model_dump(mode="json", exclude_none=True) == orjson.loads(payload)
    assert parsed.degraded is bool(reasons) and parsed.cold_start is (source == "cold_start")
    assert all(isinstance(item.item_id, str) is string_ids for item in parsed.items)
