"""Presence markers: what a publish leaves in Redis beside what it wrote, so that a reader can tell
a store that holds nothing for a user from a store that lost everything (`RedisKeys` names them).

Publish writes a marker last, after what it describes; the service checks that the markers of
what it serves are still there (`service.lifecycle.PresenceWatch`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field


def utc_now() -> str:
    """The current UTC time as ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class StoreMarker(BaseModel):
    """A feature store of one schema was written whole."""

    model_config = ConfigDict(extra="forbid")

    schema_fingerprint: str = Field(
        description="the store's id (`prerank_contract.keys.feature_store_id`): the "
        "`FeatureSchema.fingerprint` of records of indices, `raw-...` of a dataset's raw records"
    )
    records: int = Field(ge=0, description="user records written")
    written_at: str = Field(description="UTC ISO time the last record was written")
    dataset: str = Field(description="name of the dataset the records came from")
    version: str | None = Field(
        default=None, description="the version published with these records, when known"
    )
    records_sha256: str | None = Field(
        default=None,
        description="sha256 over the records' JSON in user order (what `restore` checks the "
        "records it would write against); absent in stores written before it was recorded",
    )


class VersionMarker(BaseModel):
    """A published version was written and read back whole."""

    model_config = ConfigDict(extra="forbid")

    version: str
    model: str
    files: int = Field(ge=0, description="bundle files (besides the manifest)")
    bytes: int = Field(ge=0, description="their total size")
    written_at: str = Field(description="UTC ISO time the version was read back whole")


Marker = TypeVar("Marker", bound=BaseModel)


def read_marker(client: Any, key: str, kind: type[Marker]) -> Marker | None:
    """The marker under `key` as `kind`, or None when there is none."""
    raw = client.get(key)
    return None if raw is None else kind.model_validate_json(raw)
