"""Reading a published version back from Redis: used by publish (read-back) and the service."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from prerank_contract.bundle import BundleError, parse_manifest, verify_files
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import Manifest
from prerank_contract.traffic import TrafficSplit


def _decode(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def active_version(client: Any, keys: RedisKeys) -> str | None:
    """The version id the `active` pointer names, or None when nothing is published."""
    return _decode(client.get(keys.active))


def parse_split(raw: bytes | str | None, origin: str) -> TrafficSplit | None:
    """The A/B split stored under `RedisKeys.split`, None when absent; ValueError when invalid."""
    if raw is None:
        return None
    try:
        return TrafficSplit.model_validate_json(raw)
    except ValidationError as exc:
        raise ValueError(f"{origin}: invalid A/B split: {exc}") from exc


def read_split(client: Any, keys: RedisKeys) -> TrafficSplit | None:
    """The stored A/B split, None when absent; ValueError when invalid."""
    return parse_split(client.get(keys.split), keys.split)


def published_versions(client: Any, keys: RedisKeys, start: int = 0) -> list[str]:
    """Published version ids, newest first, from position `start` of the list on."""
    return [_decode(v) or "" for v in client.lrange(keys.versions, start, -1)]


def read_pointers(client: Any, keys: RedisKeys) -> tuple[str | None, TrafficSplit | None]:
    """(active version, A/B split) in one round trip: what the service follows.

    Raises ValueError when the stored split is invalid."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.active)
    pipe.get(keys.split)
    active, split = pipe.execute()
    return _decode(active), parse_split(split, keys.split)


def read_manifest_of(client: Any, keys: RedisKeys, version: str) -> Manifest | None:
    """A published version's manifest (no file reads), or None when it has none."""
    raw = client.get(keys.manifest(version))
    return None if raw is None else parse_manifest(raw, f"redis:{keys.manifest(version)}")


def read_version(client: Any, keys: RedisKeys, version: str) -> tuple[Manifest, dict[str, bytes]]:
    """Fetch a version's manifest and files and verify every sha256; raise BundleError if not."""
    origin = f"redis:{keys.manifest(version)}"
    raw = client.get(keys.manifest(version))
    if raw is None:
        raise BundleError(f"{origin}: no manifest for version {version!r}")
    manifest = parse_manifest(raw, origin)
    chunk_counts = {_decode(k): int(v) for k, v in client.hgetall(keys.files(version)).items()}
    files: dict[str, bytes] = {}
    for name in manifest.files:
        count = chunk_counts.get(name)
        if count is None:
            raise BundleError(f"{origin}/{name}: no chunk count")
        chunks = client.mget([keys.file_chunk(version, name, i) for i in range(count)])
        if any(chunk is None for chunk in chunks):
            raise BundleError(f"{origin}/{name}: missing chunks")
        files[name] = b"".join(chunks)
    verify_files(manifest, files, origin)
    return manifest, files
