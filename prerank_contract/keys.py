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
    - ``{p}user:{schema}:{user_id}``     -> feature-store record of one user (JSON), under the
                                            fingerprint of the feature schema it is encoded in
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

    def version_pattern(self, version: str) -> str:
        return f"{self.prefix}v:{version}:*"

    def user(self, schema_fingerprint: str, user_id: int) -> str:
        return f"{self.prefix}user:{schema_fingerprint}:{user_id}"

    def user_pattern(self, schema_fingerprint: str) -> str:
        """SCAN pattern of every feature-store record under one schema; the user id is the
        last `:`-separated part of each key."""
        return f"{self.prefix}user:{schema_fingerprint}:*"
