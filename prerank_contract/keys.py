"""Redis key names: the only place that spells them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

RAW_STORE_DIGITS = 16  # hex digits of the dataset name's sha256 in a raw store's id


@dataclass(frozen=True)
class RedisKeys:
    """Key layout under one prefix (default ``prerank:``).

    - ``{p}active``                      -> active version id (the one pointer, switched last)
    - ``{p}versions``                    -> list of published version ids, newest first
    - ``{p}split``                       -> A/B split JSON {version, share, salt}: the share of
                                            users served by a treatment version (absent: none)
    - ``{p}v:{version}:manifest``        -> manifest JSON
    - ``{p}v:{version}:files``           -> hash: file name -> number of chunks
    - ``{p}v:{version}:file:{name}:{i}`` -> chunk i of a bundle file
    - ``{p}v:{version}:marker``          -> presence marker of a whole published version (JSON,
                                            `prerank_contract.markers.VersionMarker`)
    - ``{p}user:{store}:{user_id}``      -> feature-store record of one user (JSON) in one store
                                            (`feature_store_id`: a schema's, or a dataset's raw)
    - ``{p}store:{store}:marker``        -> presence marker of one feature store, written after
                                            its records (`StoreMarker`)
    - ``{p}events``                      -> stream of user events (user, item, ts, label,
                                            f.<name>), read by the event consumer's group
    - ``{p}events:dead``                 -> stream of the entries it could not apply: their fields,
                                            `reason` and `entry` (the original entry id)

    A marker says "this was published and is whole": a reader that saw one and then finds it gone
    knows Redis lost data, which an absent record alone cannot tell from an unknown user.
    """

    prefix: str = "prerank:"

    @property
    def active(self) -> str:
        return f"{self.prefix}active"

    @property
    def versions(self) -> str:
        return f"{self.prefix}versions"

    @property
    def split(self) -> str:
        return f"{self.prefix}split"

    def manifest(self, version: str) -> str:
        return f"{self.prefix}v:{version}:manifest"

    def files(self, version: str) -> str:
        return f"{self.prefix}v:{version}:files"

    def file_chunk(self, version: str, name: str, index: int) -> str:
        return f"{self.prefix}v:{version}:file:{name}:{index}"

    def version_marker(self, version: str) -> str:
        """Under the version's own keys, so it is deleted with them (`version_pattern`)."""
        return f"{self.prefix}v:{version}:marker"

    def version_pattern(self, version: str) -> str:
        return f"{self.prefix}v:{version}:*"

    def user(self, store: str, user_id: int | str) -> str:
        """A user's record in feature store `store` (`feature_store_id`)."""
        return f"{self.prefix}user:{store}:{user_id}"

    def user_pattern(self, store: str) -> str:
        """SCAN pattern of every record of one feature store; the user id is the last
        `:`-separated part of each key."""
        return f"{self.prefix}user:{store}:*"

    def store_marker(self, store: str) -> str:
        """Outside `user_pattern`, whose keys all end in a user id."""
        return f"{self.prefix}store:{store}:marker"

    @property
    def events(self) -> str:
        """The events stream (`offline_jobs.events`): one key, so one slot on a cluster."""
        return f"{self.prefix}events"

    @property
    def events_dead(self) -> str:
        """Dead letters of the events stream: one key of its own (its slot may differ)."""
        return f"{self.prefix}events:dead"


def feature_store_id(schema_fingerprint: str, dataset: str, raw_records: bool) -> str:
    """Which feature store a version reads (`user`, `store_marker`). Records of indices (a
    built-in loader's) are only read by models of the schema they were encoded for: the store is
    the schema's fingerprint. Records of raw ids and values (data read from a dataset spec) are
    encoded at request time by whichever version reads them: the store is the dataset's, shared by
    every version trained on it, whatever its vocabulary."""
    if not raw_records:
        return schema_fingerprint
    return "raw-" + hashlib.sha256(dataset.encode()).hexdigest()[:RAW_STORE_DIGITS]
