"""Reading a published version back from Redis: used by publish (read-back) and the service."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from pydantic import ValidationError

from prerank_contract.bundle import BundleError, parse_manifest, verify_files
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import Manifest
from prerank_contract.redis_client import get_many
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


class Pointers(NamedTuple):
    """What the service follows, read in one round trip."""

    active: str | None  # the version the `active` pointer names
    raw_split: bytes | str | None  # the stored A/B split, unparsed (`parse_split`)
    present: dict[str, bool]  # each key asked about -> whether it exists


def read_pointers(client: Any, keys: RedisKeys, markers: Sequence[str]) -> Pointers:
    """The `active` pointer, the A/B split and whether each of `markers` exists, in one pipelined
    round trip (single-key commands only, so it works on a Redis Cluster too)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.active)
    pipe.get(keys.split)
    for key in markers:
        pipe.exists(key)
    active, split, *found = pipe.execute()
    return Pointers(_decode(active), split, dict(zip(markers, map(bool, found), strict=True)))


def read_split(client: Any, keys: RedisKeys) -> TrafficSplit | None:
    """The stored A/B split, None when absent; ValueError when invalid."""
    return parse_split(client.get(keys.split), keys.split)


def published_versions(client: Any, keys: RedisKeys, start: int = 0) -> list[str]:
    """Published version ids, newest first, from position `start` of the list on."""
    return [_decode(v) or "" for v in client.lrange(keys.versions, start, -1)]


def read_manifest_of(client: Any, keys: RedisKeys, version: str) -> Manifest | None:
    """A published version's manifest (no file reads), or None when it has none."""
    raw = client.get(keys.manifest(version))
    return None if raw is None else parse_manifest(raw, f"redis:{keys.manifest(version)}")


def _version_files(client: Any, keys: RedisKeys, version: str) -> tuple[Manifest, dict[str, int]]:
    """A version's manifest and the chunk count of each of its files; BundleError if missing."""
    origin = f"redis:{keys.manifest(version)}"
    raw = client.get(keys.manifest(version))
    if raw is None:
        raise BundleError(f"{origin}: no manifest for version {version!r}")
    manifest = parse_manifest(raw, origin)
    counts = {_decode(k) or "": int(v) for k, v in client.hgetall(keys.files(version)).items()}
    for name in manifest.files:
        if name not in counts:
            raise BundleError(f"{origin}/{name}: no chunk count")
    return manifest, counts


def file_chunks(
    client: Any, keys: RedisKeys, version: str, name: str, count: int, chunks_per_read: int
) -> Iterator[bytes]:
    """The `count` chunks of one published file in order, `chunks_per_read` per round trip;
    BundleError when one is missing."""
    for start in range(0, count, chunks_per_read):
        stop = min(start + chunks_per_read, count)
        values = get_many(client, [keys.file_chunk(version, name, i) for i in range(start, stop)])
        for chunk in values:
            if chunk is None:
                raise BundleError(f"redis:{keys.manifest(version)}/{name}: missing chunks")
            yield chunk


def read_version(client: Any, keys: RedisKeys, version: str) -> tuple[Manifest, dict[str, bytes]]:
    """Fetch a version's manifest and files and verify every sha256; raise BundleError if not."""
    manifest, counts = _version_files(client, keys, version)
    files = {
        name: b"".join(file_chunks(client, keys, version, name, counts[name], counts[name] or 1))
        for name in manifest.files
    }
    verify_files(manifest, files, f"redis:{keys.manifest(version)}")
    return manifest, files


def check_version(client: Any, keys: RedisKeys, version: str, chunks_per_read: int) -> Manifest:
    """Verify every file of a published version (sha256 and size) without holding a whole file:
    chunks are hashed as they arrive, `chunks_per_read` per round trip. Raises BundleError."""
    manifest, counts = _version_files(client, keys, version)
    origin = f"redis:{keys.manifest(version)}"
    for name, entry in manifest.files.items():
        digest, size = hashlib.sha256(), 0
        for chunk in file_chunks(client, keys, version, name, counts[name], chunks_per_read):
            digest.update(chunk)
            size += len(chunk)
        if size != entry.bytes or digest.hexdigest() != entry.sha256:
            raise BundleError(f"{origin}/{name}: sha256 mismatch (corrupted or truncated)")
    return manifest
