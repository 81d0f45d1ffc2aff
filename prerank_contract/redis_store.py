"""Reading a published version back from Redis: used by publish (read-back) and the service."""

from __future__ import annotations

from typing import Any

from prerank_contract.bundle import BundleError, parse_manifest, verify_files
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import Manifest


def _decode(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def active_version(client: Any, keys: RedisKeys) -> str | None:
    """The version id the `active` pointer names, or None when nothing is published."""
    return _decode(client.get(keys.active))


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
