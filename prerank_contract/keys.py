"""Redis key names: the only place that spells them."""

from __future__ import annotations

from dataclasses import dataclass


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
    - ``{p}user:{schema}:{user_id}``     -> feature-store record of one user (JSON), under the
                                            fingerprint of the feature schema it is encoded in
    - ``{p}store:{schema}:marker``       -> presence marker of the feature store of one schema,
                                            written after its records (`StoreMarker`)

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

    def user(self, schema_fingerprint: str, user_id: int | str) -> str:
        return f"{self.prefix}user:{schema_fingerprint}:{user_id}"

    def user_pattern(self, schema_fingerprint: str) -> str:
        """SCAN pattern of every feature-store record under one schema; the user id is the
        last `:`-separated part of each key."""
        return f"{self.prefix}user:{schema_fingerprint}:*"

    def store_marker(self, schema_fingerprint: str) -> str:
        """Outside `user_pattern`, whose keys all end in a user id."""
        return f"{self.prefix}store:{schema_fingerprint}:marker"
