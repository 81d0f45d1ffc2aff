"""Schemathesis against a real uvicorn serving the published tiny FIT: every operation of the served
/openapi.json, fuzzed with valid and invalid inputs, answers without a server error and as
documented (status code, content type, response schema, valid data accepted, invalid rejected)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.hooks import HookContext

from offline_jobs.data.dataset import InteractionData
from prerank_contract.features import FieldSpec
from prerank_contract.http import JSON_TYPE, MSGPACK_TYPE
from research.service_process import ServiceProcess
from tests.conftest import Bundle, start_service

MAX_CANDIDATES = 500
MAX_HISTORY = 50
METRICS = "/metrics"

MSGPACK_UINT_LIMIT = 2**64  # MessagePack integers are at most 64 bits wide


def msgpack_value(value: Any) -> Any:
    """`value` with integers MessagePack cannot carry spelled as strings: still no valid id."""
    if isinstance(value, int) and not -(2**63) <= value < MSGPACK_UINT_LIMIT:
        return str(value)
    if isinstance(value, list):
        return [msgpack_value(item) for item in value]
    if isinstance(value, dict):
        return {key: msgpack_value(item) for key, item in value.items()}
    return value


@schemathesis.serializer(MSGPACK_TYPE)
def to_msgpack(context: Any, value: Any) -> bytes:
    """Fuzzed /prerank bodies sent as MessagePack too (the documented second request type)."""
    return bytes(msgpack.packb(msgpack_value(value)))


# (operation, generation mode, status, scored) of every call the fuzzer made.
Tally = Counter[tuple[str, str, int, bool]]


@pytest.fixture(scope="module")
def fuzzed_service(
    published_fit: Bundle, key_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Its own uvicorn (the fuzzer must not share state with other tests), reading the published
    tiny FIT and its feature store from the real Redis."""
    running = start_service(
        {
            "PRERANK_REDIS_KEY_PREFIX": key_prefix,
            "PRERANK_MAX_CANDIDATES": str(MAX_CANDIDATES),
            "PRERANK_MAX_REQUEST_HISTORY": str(MAX_HISTORY),
        },
        tmp_path_factory.mktemp("fuzz") / "service.log",
    )
    yield running
    running.stop()


def whole_ints(value: Any) -> Any:
    """`value` with integers spelled as whole floats (`7.0`) spelled as ints (`7`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [whole_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: whole_ints(item) for key, item in value.items()}
    return value


def as_int(value: int | float | str) -> int:
    """A drawn id or value as an integer, deterministically (a string by its characters)."""
    if isinstance(value, str):
        return sum(ord(character) for character in value)
    return int(value) if math.isfinite(value) else 0


@dataclass(frozen=True)
class Contract:
    """What /prerank accepts beyond its JSON schema: the served model's user fields and vocabulary
    sizes, the service's list limits, and ids spelled as JSON integers (a whole float such as
    `7.0` is an `integer` to JSON Schema 2020-12, but not to the service's strict parser)."""

    user_fields: tuple[FieldSpec, ...]
    catalogue: tuple[int, ...]

    def item(self, item_id: int | str) -> int:
        """Three ids in four become catalogue items (so the model scores them), the rest stay as
        drawn (mostly unknown items). Deterministic, so Hypothesis can replay and shrink."""
        item_id = as_int(item_id)
        return item_id if item_id % 4 == 0 else self.catalogue[item_id % len(self.catalogue)]

    def feature(self, spec: FieldSpec, value: Any) -> int | list[int]:
        if isinstance(value, list):
            return [as_int(v) % spec.vocab_size for v in value[: spec.slots]]
        return as_int(value) % spec.vocab_size

    def conform(self, body: dict[str, Any]) -> dict[str, Any]:
        """A schema-valid body made contract-valid: same shape, values moved into range, and
        the served built-in model's integer ids and indices where the schema allows strings (a
        version trained from a spec would take strings)."""
        body = whole_ints(body)
        body["user_id"] = as_int(body["user_id"])
        body["candidates"] = [self.item(i) for i in body["candidates"][:MAX_CANDIDATES]]
        if body.get("history") is not None:
            body["history"] = [self.item(i) for i in body["history"][:MAX_HISTORY]]
        if body.get("user_features") is not None:
            fields = self.user_fields
            body["user_features"] = {
                fields[n % len(fields)].name: self.feature(fields[n % len(fields)], value)
                for n, value in enumerate(body["user_features"].values())
            }
        return body


@pytest.fixture(scope="module")
def api_schema(
    fuzzed_service: ServiceProcess, published_fit: Bundle, tiny_data: InteractionData
) -> schemathesis.BaseSchema:
    """The served /openapi.json; a valid /prerank body is made valid for the served model too,
    so a 422 to it is a real rejection of valid data (invalid bodies are fuzzed as drawn)."""
    schema = schemathesis.openapi.from_url(f"{fuzzed_service.url}/openapi.json")
    contract = Contract(
        published_fit.manifest.feature_schema.user_fields,
        tuple(int(i) for i in tiny_data.catalogue),
    )

    def map_case(context: HookContext, case: schemathesis.Case) -> schemathesis.Case:
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if case.operation.path == "/prerank" and positive and isinstance(case.body, dict):
            case.body = contract.conform(case.body)
        return case

    schema.hooks.register_hook_with_name(map_case, "map_case")
    return schema


@pytest.fixture(scope="module")
def positive_schema(fuzzed_service: ServiceProcess) -> schemathesis.BaseSchema:
    """The served /openapi.json as is, generating valid data only."""
    config = schemathesis.Config.from_dict({"generation": {"mode": "positive"}})
    return schemathesis.openapi.from_url(f"{fuzzed_service.url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def tally() -> Tally:
    return Counter()


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy loader reads and writes `item._nodeid`, which pytest 9 no longer
    has (it keeps `item.nodeid`); give it the attribute so `from_fixture` runs."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")
positive_prerank = schemathesis.pytest.from_fixture("positive_schema").include(path="/prerank")
# Bounded and deterministic: the same few hundred requests every run, in seconds.
FUZZ = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@schema.parametrize()
@FUZZ
def test_every_operation_answers_as_documented(case: schemathesis.Case, tally: Tally) -> None:
    """All of schemathesis's checks: no 5xx, a documented status code, content type, headers and
    body schema; valid data accepted (2xx), invalid data rejected (4xx)."""
    response = case.call_and_validate(timeout=30)
    mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
    scored = response.status_code == 200 and bool(
        case.operation.path == "/prerank" and response.json()["items"]
    )
    tally[(case.operation.label, mode, response.status_code, scored)] += 1


def test_the_fuzzing_reached_the_model(tally: Tally) -> None:
    """The fuzz above is not all 422s: valid /prerank bodies were scored by the model."""
    if not tally:
        pytest.skip("needs test_every_operation_answers_as_documented to run first")
    prerank = {key: n for key, n in tally.items() if key[0] == "POST /prerank"}
    assert sum(n for (_, mode, _, _), n in prerank.items() if mode == "negative") > 0
    assert sum(n for (_, _, _, scored), n in prerank.items() if scored) > 0


@positive_prerank.parametrize()
@FUZZ
def test_any_schema_valid_prerank_body_is_a_200_or_a_documented_422(
    case: schemathesis.Case,
) -> None:
    """Bodies as the schema alone allows them (unknown user field names, out-of-vocabulary or
    beyond-int64 feature values, ids spelled `7.0`): never a server error, always as documented.
    Acceptance is not asserted here: field names and vocabularies are the served model's, which
    the static schema cannot state (the test above asserts it for contract-valid bodies)."""
    response = case.call_and_validate(
        excluded_checks=[schemathesis.checks.positive_data_acceptance], timeout=30
    )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert all(error["loc"][0] in ("body", "header") for error in response.json()["detail"])


def integer_bounds(schema: dict[str, Any]) -> tuple[int, int]:
    """The smallest and largest integer that a JSON-Schema integer `schema` admits."""
    low = math.ceil(schema["minimum"]) if "minimum" in schema else None
    if "exclusiveMinimum" in schema:
        low = math.floor(schema["exclusiveMinimum"]) + 1
    high = math.floor(schema["maximum"]) if "maximum" in schema else None
    if "exclusiveMaximum" in schema:
        high = math.ceil(schema["exclusiveMaximum"]) - 1
    assert low is not None and high is not None, schema
    return low, high


def integer_member(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The integer id of a field's schema: itself, or a member of its `anyOf` (an id may be a
    string too; a list may be null), or the items of its integer list; None without one."""
    if schema.get("type") == "integer":
        return schema
    if schema.get("type") == "array":
        return integer_member(schema["items"])
    members = [integer_member(member) for member in schema.get("anyOf", [])]
    return next((member for member in members if member), None)


@pytest.mark.parametrize("field", ["user_id", "candidates", "history"])
def test_documented_integer_bounds_are_the_enforced_ones(
    fuzzed_service: ServiceProcess, field: str
) -> None:
    """The bounds a client reads from /openapi.json (as JSON numbers) accept and reject exactly
    what the service does: the edge values answer 200, one beyond them 422 naming the field."""
    spec = httpx.get(f"{fuzzed_service.url}/openapi.json").json()
    request_body = spec["paths"]["/prerank"]["post"]["requestBody"]
    properties = request_body["content"]["application/json"]["schema"]["properties"]
    integer = integer_member(properties[field])
    assert integer is not None, properties[field]
    low, high = integer_bounds(integer)

    def post(value: int) -> httpx.Response:
        body: dict[str, Any] = {"user_id": 1, "candidates": []}
        body[field] = value if field == "user_id" else [value]
        return httpx.post(f"{fuzzed_service.url}/prerank", json=body, timeout=30)

    for edge in (low, high):
        assert post(edge).status_code == 200, (field, edge)
    for beyond in (low - 1, high + 1):
        response = post(beyond)
        assert response.status_code == 422, (field, beyond)
        assert response.json()["detail"][0]["loc"][:2] == ["body", field]


def test_metrics_documents_its_content_type(fuzzed_service: ServiceProcess) -> None:
    spec = httpx.get(f"{fuzzed_service.url}/openapi.json").json()
    documented = spec["paths"][METRICS]["get"]["responses"]["200"]["content"]
    received = httpx.get(f"{fuzzed_service.url}{METRICS}").headers["content-type"]
    assert received.split(";")[0].strip() in documented


@pytest.fixture(scope="module")
def unready_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    """The schema served by a service that has no model to load (no Redis, no bundle)."""
    running = start_service(
        {"PRERANK_USE_REDIS": "false"}, tmp_path_factory.mktemp("unready") / "service.log"
    )
    try:
        yield schemathesis.openapi.from_url(f"{running.url}/openapi.json")
    finally:
        running.stop()


UNREADY_CALLS = [
    ("POST", "/prerank", {"user_id": 1, "candidates": [1, 2]}),
    ("GET", "/clusters", None),
    ("GET", "/readyz", None),
]


@pytest.mark.parametrize(("method", "path", "body"), UNREADY_CALLS)
def test_without_a_model_every_operation_answers_as_documented(
    unready_schema: schemathesis.BaseSchema, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Not ready is a designed 503, so not a server error here; but it must be documented (status
    code, content type and body schema, as everywhere)."""
    operation = unready_schema[path][method]
    case = operation.Case() if body is None else operation.Case(body=body, media_type=JSON_TYPE)
    response = case.call_and_validate(
        excluded_checks=[schemathesis.checks.not_a_server_error], timeout=30
    )
    assert response.status_code == 503
