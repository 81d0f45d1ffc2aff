"""The wire formats the benchmark speaks to /prerank, named by the answer's format
(`prerank_contract.http.AnswerFormat`): what the body is written in, the Content-Type and Accept
it goes with, and how the answer is read back. The media types are the contract's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from prerank_contract.http import (
    ANSWER_TYPES,
    JSON_TYPE,
    MSGPACK_TYPE,
    AnswerFormat,
)
from research.http_client import AnswerDecoder

JSON_WIRE: AnswerFormat = "json"  # the default format, the one the latency goals are judged in


@dataclass(frozen=True)
class WireFormat:
    """One way of calling /prerank: the body's encoding and media type, and the answer's."""

    name: AnswerFormat
    content_type: str  # of the request body
    accept: str  # the answer's media type, asked for
    encode: Callable[[Mapping[str, Any]], bytes]  # a body's fields -> the body
    decode: AnswerDecoder  # a 200 answer -> its fields

    @property
    def headers(self) -> dict[str, str]:
        """The headers a request in this format carries besides Content-Type."""
        return {"accept": self.accept}


def _msgpack_body(fields: Mapping[str, Any]) -> bytes:
    body: bytes = msgpack.packb(fields)
    return body


def _msgpack_answer(answer: bytes) -> Mapping[str, Any]:
    fields: Mapping[str, Any] = msgpack.unpackb(answer)
    return fields


# JSON: the default answer, one object per item. Columnar JSON: the same JSON body, the answer's
# ids and scores as two arrays. MessagePack: body and answer, the answer columnar.
WIRE_FORMATS: dict[AnswerFormat, WireFormat] = {
    "json": WireFormat("json", JSON_TYPE, ANSWER_TYPES["json"], orjson.dumps, orjson.loads),
    "columnar_json": WireFormat(
        "columnar_json", JSON_TYPE, ANSWER_TYPES["columnar_json"], orjson.dumps, orjson.loads
    ),
    "msgpack": WireFormat(
        "msgpack", MSGPACK_TYPE, ANSWER_TYPES["msgpack"], _msgpack_body, _msgpack_answer
    ),
}
