"""Publish a bundle to Redis under versioned keys; switch the `active` pointer last.

Order: verify the bundle on disk -> gate it (parity, AUC floor, AUC against the active version;
`prerank_contract.gate`) -> write every chunk, the chunk counts and the manifest (carrying the
gate's decision) -> read everything back and check sha256 -> SET active (the one atomic step) ->
record the version -> drop versions beyond the retention. A failure before the SET leaves the
previous version active and intact, and removes the keys the failed version wrote. A refused
version writes nothing; an operator's override is recorded in the published manifest.

User features are published separately (`publish_user_features`), keyed by the feature schema's
fingerprint: refreshing them never changes what a model of another schema reads.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
import redis
from tqdm import tqdm

from offline_jobs.data.dataset import InteractionData
from prerank_contract.bundle import BundleError, verify_bundle_dir
from prerank_contract.gate import GateConfig, gate_problems
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import GateRecord, Manifest
from prerank_contract.redis_store import (
    active_version,
    parse_split,
    read_manifest_of,
    read_version,
)

log = logging.getLogger(__name__)

SCAN_BATCH = 1000  # keys per SCAN round trip when deleting a version


class PublishError(Exception):
    """Redis refused a write: the version was not activated; the message says what failed."""


class GateRefusedError(PublishError):
    """The gate refused the version: nothing was written; the message lists every reason."""


def _redis_reason(exc: redis.RedisError) -> str:
    """The server's reason, without the (binary) command a failed pipeline echoes."""
    message = str(exc)
    return message.split("caused error:", 1)[-1].strip()


@dataclass(frozen=True)
class PublishResult:
    version: str
    action: Literal["published", "already_active", "published_inactive"]
    bytes_written: int
    seconds: float
    removed_versions: tuple[str, ...]


def publish_user_features(
    client: Any, keys: RedisKeys, data: InteractionData, batch_size: int, *, progress: bool = True
) -> int:
    """Write every user's profile and latest history to the online feature store, under the
    fingerprint of the data's feature schema (a model only reads records of its own schema)."""
    user_ids = range(1, data.num_users + 1)
    schema = data.schema.fingerprint
    for start in tqdm(
        range(0, len(user_ids), batch_size),
        desc="feature store",
        disable=not progress,
        unit="batch",
    ):
        pipe = client.pipeline(transaction=False)
        for user_id in user_ids[start : start + batch_size]:
            pipe.set(keys.user(schema, user_id), orjson.dumps(data.user_record(user_id)))
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise PublishError(f"writing user features failed: {_redis_reason(exc)}") from exc
    return len(user_ids)


def publish_bundle(
    client: Any,
    keys: RedisKeys,
    bundle_dir: Path,
    *,
    chunk_bytes: int,
    keep_versions: int,
    gate: GateConfig,
    activate: bool = True,
    override_reason: str | None = None,
    progress: bool = True,
) -> PublishResult:
    """Publish `bundle_dir`; a no-op when that version is already active and reads back intact.

    `activate=False` publishes without moving the pointer (a candidate for an A/B split or a
    later activation). Raises GateRefusedError (the gate refused and no `override_reason` was
    given), BundleError (bundle invalid, or read-back mismatch) or PublishError (Redis refused a
    command); in every case the pointer has not moved and the failed version's keys are removed.
    """
    started = time.perf_counter()
    manifest = verify_bundle_dir(bundle_dir)
    version = manifest.version
    active = active_version(client, keys)
    if active == version:
        try:
            read_version(client, keys, version)
            return PublishResult(version, "already_active", 0, time.perf_counter() - started, ())
        except BundleError as exc:
            log.warning(
                "active version %s is damaged in Redis (%s); publishing again", version, exc
            )
    gated = _gate(client, keys, manifest, active, gate, override_reason)
    try:
        written = _write_version(client, keys, bundle_dir, gated, chunk_bytes, progress)
        read_version(client, keys, version)
        if activate:
            client.set(keys.active, version)
        client.lrem(keys.versions, 0, version)
        client.lpush(keys.versions, version)
        removed = _drop_old_versions(client, keys, keep_versions)
    except redis.RedisError as exc:
        _discard_failed(client, keys, version)
        raise PublishError(f"publishing {version} failed: {_redis_reason(exc)}") from exc
    except (PublishError, BundleError):
        _discard_failed(client, keys, version)
        raise
    seconds = time.perf_counter() - started
    now_active = version if activate else active
    log.info("published %s: %d bytes in %.2f s; active: %s", version, written, seconds, now_active)
    action: Literal["published", "published_inactive"] = (
        "published" if activate else "published_inactive"
    )
    return PublishResult(version, action, written, seconds, removed)


def _gate(
    client: Any,
    keys: RedisKeys,
    manifest: Manifest,
    active: str | None,
    config: GateConfig,
    override_reason: str | None,
) -> Manifest:
    """The manifest to publish, carrying the gate's decision; GateRefusedError when refused."""
    active_manifest = None
    if active is not None and active != manifest.version:
        try:
            active_manifest = read_manifest_of(client, keys, active)
        except BundleError as exc:
            log.warning("active version %s has no readable manifest (%s)", active, exc)
    problems = gate_problems(manifest, config, active_manifest)
    if problems and override_reason is None:
        raise GateRefusedError(
            f"gate refused {manifest.version}: " + "; ".join(problems) + " (nothing written; "
            "publish with an override reason to force it)"
        )
    if problems:
        log.warning("gate overridden for %s (%s): %s", manifest.version, override_reason, problems)
    record = GateRecord(
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        min_auc=config.min_auc,
        max_auc_drop=config.max_auc_drop,
        compared_with=None if active_manifest is None else active_manifest.version,
        problems=problems,
        override_reason=override_reason if problems else None,
    )
    return manifest.model_copy(update={"gate": record})


def _write_version(
    client: Any,
    keys: RedisKeys,
    bundle_dir: Path,
    manifest: Manifest,
    chunk_bytes: int,
    progress: bool,
) -> int:
    """Every file as chunks, then the chunk counts, then the manifest. Returns bytes written."""
    version = manifest.version
    written = 0
    counts: dict[str, int] = {}
    for name in tqdm(
        sorted(manifest.files), desc=f"publish {version}", disable=not progress, unit="file"
    ):
        data = (bundle_dir / name).read_bytes()
        chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
        pipe = client.pipeline(transaction=False)
        for index, chunk in enumerate(chunks):
            pipe.set(keys.file_chunk(version, name, index), chunk)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            raise PublishError(
                f"publishing {version}: writing {name} failed: {_redis_reason(exc)}"
            ) from exc
        counts[name] = len(chunks)
        written += len(data)
    client.hset(keys.files(version), mapping=counts)
    client.set(keys.manifest(version), manifest.model_dump_json())
    return written


def _discard_failed(client: Any, keys: RedisKeys, version: str) -> None:
    """Remove what a failed publish wrote, unless that version is (still) the active one."""
    try:
        if active_version(client, keys) != version:
            _delete_version_keys(client, keys, version)
    except redis.RedisError as exc:
        log.warning("could not remove the keys of failed version %s: %s", version, exc)


def _delete_version_keys(client: Any, keys: RedisKeys, version: str) -> None:
    doomed = list(client.scan_iter(match=keys.version_pattern(version), count=SCAN_BATCH))
    if doomed:
        client.delete(*doomed)


def _drop_old_versions(client: Any, keys: RedisKeys, keep: int) -> tuple[str, ...]:
    """Delete every key of versions past the newest `keep` (never the active one, nor the A/B
    split's treatment)."""
    active = active_version(client, keys)
    try:
        split = parse_split(client.get(keys.split), keys.split)
    except ValueError:
        split = None
    live = {active, None if split is None else split.version}
    stale = [
        v.decode() if isinstance(v, bytes) else v for v in client.lrange(keys.versions, keep, -1)
    ]
    removed = []
    for version in stale:
        if version in live:
            continue
        _delete_version_keys(client, keys, version)
        client.lrem(keys.versions, 0, version)
        removed.append(version)
    return tuple(removed)
