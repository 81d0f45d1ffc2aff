"""Publish a bundle to Redis under versioned keys; switch the `active` pointer last.

Order: verify the bundle on disk -> gate it (parity, AUC floor, AUC against the active version;
`prerank_contract.gate`) -> write every chunk, the chunk counts and the manifest (carrying the
gate's decision) -> read everything back and check sha256 -> write the version's presence marker
-> record the version in the list -> SET active (the one atomic step) -> drop versions beyond the
retention. A failure before the SET
leaves the previous version active and intact, and removes the keys the failed version wrote. A
refused version writes nothing; an operator's override is recorded in the published manifest.

User features are published separately (`publish_user_features`), keyed by the feature schema's
fingerprint: refreshing them never changes what a model of another schema reads. Each ends with
the store's presence marker (`prerank_contract.markers`), written after every record.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from tqdm import tqdm

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.records import RawId
from offline_jobs.data.records import user_records as records_of
from offline_jobs.release.live_records import LiveRecordsConflictError, write_over_live
from prerank_contract.bundle import BundleError, verify_bundle_dir
from prerank_contract.gate import GateConfig, gate_problems
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import GateRecord, Manifest
from prerank_contract.markers import StoreMarker, VersionMarker, utc_now
from prerank_contract.redis_client import REDIS_ERRORS
from prerank_contract.redis_store import (
    active_version,
    check_version,
    published_versions,
    read_manifest_of,
    read_split,
)

log = logging.getLogger(__name__)

SCAN_BATCH = 1000  # keys per SCAN round trip when deleting a version
# Chunks per pipeline round trip, written and read back: 64 MiB of 4 MiB chunks at most in memory.
CHUNKS_PER_PIPELINE = 16
# The steps `publish_bundle` reports to `on_step`, in order (plus `file:<name>` per file).
PUBLISH_STEPS = (
    "gated",
    "orphans_collected",
    "counts_written",
    "manifest_written",
    "read_back",
    "marker_written",
    "recorded",
    "activated",
    "retention",
)


class PublishError(Exception):
    """Redis refused a write: the version was not activated; the message says what failed."""


class GateRefusedError(PublishError):
    """The gate refused the version: nothing was written; the message lists every reason."""


def _redis_reason(exc: Exception) -> str:
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
    gate: GateRecord | None = None  # the gate's decision; None when nothing was published


# `publish_bundle`'s default gate baseline: the version active in Redis when it publishes.
ACTIVE_BASELINE: Literal["active"] = "active"


def user_records(data: InteractionData) -> Iterator[tuple[RawId, bytes]]:
    """(user id as the caller writes it, feature-store record as JSON) of every user, in user
    order (`offline_jobs.data.records`)."""
    for user_id, record in records_of(data):
        yield user_id, orjson.dumps(record)


def records_digest(data: InteractionData) -> str:
    """sha256 over every record `publish_user_features` would write, in the same order."""
    digest = hashlib.sha256()
    for _, record in user_records(data):
        digest.update(record)
    return digest.hexdigest()


@dataclass(frozen=True)
class LiveEvents:
    """Carry into the published records what the event consumer wrote after `after_ms` (Unix
    ms: when the job read its data); `retries`: see `live_records.write_over_live`."""

    after_ms: int
    retries: int


def _write_records(
    client: Any,
    keys: RedisKeys,
    store: str,
    batch: list[tuple[RawId, bytes]],
    max_history: int,
    live: LiveEvents | None,
) -> None:
    if live is not None:
        write_over_live(
            client,
            keys,
            store,
            batch,
            after_ms=live.after_ms,
            max_history=max_history,
            retries=live.retries,
        )
        return
    pipe = client.pipeline(transaction=False)
    for user_id, record in batch:
        pipe.set(keys.user(store, user_id), record)
    pipe.execute()


def publish_user_features(
    client: Any,
    keys: RedisKeys,
    data: InteractionData,
    batch_size: int,
    *,
    version: str | None = None,
    progress: bool = True,
    live: LiveEvents | None = None,
) -> StoreMarker:
    """Write every user's profile and latest history to the online feature store
    (`data.feature_store`), then the store's presence marker (naming `version`, the version
    published with it, when given): last, so a marker is only ever found beside a whole store.
    With `live`, each record keeps the events the consumer applied to it after the data was read
    (`live_records`). Returns the marker."""
    schema = data.feature_store
    digest = hashlib.sha256()
    records = user_records(data)
    with tqdm(total=data.num_users, desc="feature store", disable=not progress, unit="user") as bar:
        while batch := list(itertools.islice(records, batch_size)):
            for _, record in batch:
                digest.update(record)
            try:
                _write_records(client, keys, schema, batch, data.schema.max_history, live)
            except REDIS_ERRORS as exc:
                raise PublishError(f"writing user features failed: {_redis_reason(exc)}") from exc
            except LiveRecordsConflictError as exc:
                raise PublishError(f"writing user features failed: {exc}") from exc
            bar.update(len(batch))
    marker = StoreMarker(
        schema_fingerprint=schema,
        records=data.num_users,
        written_at=utc_now(),
        dataset=data.name,
        version=version,
        records_sha256=digest.hexdigest(),
    )
    try:
        client.set(keys.store_marker(schema), marker.model_dump_json())
    except REDIS_ERRORS as exc:
        raise PublishError(
            f"writing the feature store's marker failed: {_redis_reason(exc)}"
        ) from exc
    return marker


def publish_bundle(
    client: Any,
    keys: RedisKeys,
    bundle_dir: Path,
    *,
    chunk_bytes: int,
    keep_versions: int,
    gate: GateConfig,
    orphan_min_idle_seconds: float,
    chunks_per_pipeline: int = CHUNKS_PER_PIPELINE,
    activate: bool = True,
    override_reason: str | None = None,
    baseline: Manifest | Literal["active"] | None = ACTIVE_BASELINE,
    progress: bool = True,
    on_step: Callable[[str], None] = lambda step: None,
) -> PublishResult:
    """Publish `bundle_dir`; a no-op when that version is already active and reads back intact.

    Keys of versions no list or pointer names (a publisher killed mid-write) are deleted once
    untouched for `orphan_min_idle_seconds`, so a publish running beside this one is left alone.
    `on_step(name)` is called after each step (`PUBLISH_STEPS`, and `file:<name>` after each
    file): the fault-injection tests stop the publisher there.

    `activate=False` publishes without moving the pointer (a candidate for an A/B split or a
    later activation). The gate compares the version with `baseline`: by default the active one;
    `restore` passes the one it was compared with when first published. Raises GateRefusedError
    (the gate refused and no `override_reason` was given), BundleError (bundle invalid, or
    read-back mismatch) or PublishError (Redis refused a command); in every case the pointer has
    not moved and the failed version's keys are removed.
    """
    started = time.perf_counter()
    manifest = verify_bundle_dir(bundle_dir)
    version = manifest.version
    active = active_version(client, keys)
    if active == version:
        try:
            check_version(client, keys, version, chunks_per_pipeline)
            # a version published before markers existed gets one; an existing one is kept
            client.set(keys.version_marker(version), _version_marker(manifest), nx=True)
            return PublishResult(version, "already_active", 0, time.perf_counter() - started, ())
        except BundleError as exc:
            log.warning(
                "active version %s is damaged in Redis (%s); publishing again", version, exc
            )
    if baseline == ACTIVE_BASELINE:
        baseline = _active_manifest(client, keys, active, version)
    gated = _gate(manifest, baseline, gate, override_reason)
    on_step("gated")
    try:
        orphans = _collect_orphans(client, keys, version, orphan_min_idle_seconds)
        on_step("orphans_collected")
        written = _write_version(
            client, keys, bundle_dir, gated, chunk_bytes, chunks_per_pipeline, progress, on_step
        )
        check_version(client, keys, version, chunks_per_pipeline)
        on_step("read_back")
        client.set(keys.version_marker(version), _version_marker(gated))
        on_step("marker_written")
        client.lrem(keys.versions, 0, version)
        client.lpush(keys.versions, version)
        on_step("recorded")
        if activate:
            client.set(keys.active, version)  # the one atomic step that changes what serves
        on_step("activated")
        removed = orphans + _drop_old_versions(client, keys, keep_versions)
        on_step("retention")
    except REDIS_ERRORS as exc:
        _discard_failed(client, keys, version)
        raise PublishError(f"publishing {version} failed: {_redis_reason(exc)}") from exc
    except Exception:  # any failure before activation: remove what this publish wrote
        _discard_failed(client, keys, version)
        raise
    seconds = time.perf_counter() - started
    now_active = version if activate else active
    log.info("published %s: %d bytes in %.2f s; active: %s", version, written, seconds, now_active)
    action: Literal["published", "published_inactive"] = (
        "published" if activate else "published_inactive"
    )
    return PublishResult(version, action, written, seconds, removed, gated.gate)


def _active_manifest(
    client: Any, keys: RedisKeys, active: str | None, publishing: str
) -> Manifest | None:
    """The manifest of the active version, unless it is the one publishing or unreadable."""
    if active is None or active == publishing:
        return None
    try:
        return read_manifest_of(client, keys, active)
    except BundleError as exc:
        log.warning("active version %s has no readable manifest (%s)", active, exc)
        return None


def _gate(
    manifest: Manifest,
    baseline: Manifest | None,
    config: GateConfig,
    override_reason: str | None,
) -> Manifest:
    """The manifest to publish, carrying the gate's decision against `baseline`;
    GateRefusedError when refused."""
    problems = gate_problems(manifest, config, baseline)
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
        compared_with=None if baseline is None else baseline.version,
        problems=problems,
        override_reason=override_reason if problems else None,
    )
    return manifest.model_copy(update={"gate": record})


def _version_marker(manifest: Manifest) -> str:
    """The presence marker of a version read back whole, as JSON."""
    return VersionMarker(
        version=manifest.version,
        model=manifest.model_name,
        files=len(manifest.files),
        bytes=sum(entry.bytes for entry in manifest.files.values()),
        written_at=utc_now(),
    ).model_dump_json()


def _write_version(
    client: Any,
    keys: RedisKeys,
    bundle_dir: Path,
    manifest: Manifest,
    chunk_bytes: int,
    chunks_per_pipeline: int,
    progress: bool,
    on_step: Callable[[str], None],
) -> int:
    """Every file as chunks, then the chunk counts, then the manifest. Returns bytes written.

    A file is read `chunk_bytes` at a time and written `chunks_per_pipeline` chunks per round
    trip, so memory stays bounded whatever the size of the item table."""
    version = manifest.version
    total = sum(entry.bytes for entry in manifest.files.values())
    counts: dict[str, int] = {}
    with tqdm(
        total=total, desc=f"publish {version}", disable=not progress, unit="B", unit_scale=True
    ) as bar:
        for name in sorted(manifest.files):
            counts[name] = _write_file(
                client, keys, version, bundle_dir / name, chunk_bytes, chunks_per_pipeline, bar
            )
            on_step(f"file:{name}")
    client.hset(keys.files(version), mapping=counts)
    on_step("counts_written")
    client.set(keys.manifest(version), manifest.model_dump_json())
    on_step("manifest_written")
    return total


def _write_file(
    client: Any,
    keys: RedisKeys,
    version: str,
    path: Path,
    chunk_bytes: int,
    chunks_per_pipeline: int,
    bar: tqdm,
) -> int:
    """One bundle file as chunks `{version}:file:{name}:{i}`; returns the number of chunks (an
    empty file is one empty chunk)."""
    index = 0
    with path.open("rb") as handle:
        chunk = handle.read(chunk_bytes)
        while True:
            pipe = client.pipeline(transaction=False)
            for _ in range(chunks_per_pipeline):
                pipe.set(keys.file_chunk(version, path.name, index), chunk)
                index += 1
                bar.update(len(chunk))
                chunk = handle.read(chunk_bytes)
                if not chunk:
                    break
            try:
                pipe.execute()
            except REDIS_ERRORS as exc:
                raise PublishError(
                    f"publishing {version}: writing {path.name} failed: {_redis_reason(exc)}"
                ) from exc
            if not chunk:
                return index


def _discard_failed(client: Any, keys: RedisKeys, version: str) -> None:
    """Remove what a failed publish wrote, unless that version is (still) the active one."""
    try:
        if active_version(client, keys) != version:
            client.lrem(keys.versions, 0, version)
            _delete_version_keys(client, keys, version)
    except REDIS_ERRORS as exc:
        log.warning("could not remove the keys of failed version %s: %s", version, exc)


def _delete_version_keys(client: Any, keys: RedisKeys, version: str) -> None:
    doomed = list(client.scan_iter(match=keys.version_pattern(version), count=SCAN_BATCH))
    if doomed:
        client.delete(*doomed)


def _collect_orphans(
    client: Any, keys: RedisKeys, publishing: str, min_idle_seconds: float
) -> tuple[str, ...]:
    """Delete the keys of versions that no list, pointer or split names: what a publisher killed
    mid-write left behind. Never the active version, the split's, the one being published, nor
    one whose keys were touched in the last `min_idle_seconds` (another publish in progress)."""
    live = set(_live_versions(client, keys)) | set(published_versions(client, keys)) | {publishing}
    newest_idle: dict[str, int] = {}
    for key in client.scan_iter(match=keys.version_pattern("*"), count=SCAN_BATCH):
        name = key.decode() if isinstance(key, bytes) else key
        version = name[len(keys.prefix) + len("v:") :].split(":", 1)[0]
        if version in live:
            continue
        idle = client.object("idletime", key) or 0
        newest_idle[version] = min(idle, newest_idle.get(version, idle))
    orphans = tuple(sorted(v for v, idle in newest_idle.items() if idle >= min_idle_seconds))
    for version in orphans:
        log.warning("removing the keys of %s, left by an interrupted publish", version)
        _delete_version_keys(client, keys, version)
    return orphans


def _live_versions(client: Any, keys: RedisKeys) -> tuple[str, ...]:
    """The versions taking traffic: the active one and the A/B split's treatment."""
    try:
        split = read_split(client, keys)
    except ValueError:
        split = None
    live = (active_version(client, keys), None if split is None else split.version)
    return tuple(v for v in live if v is not None)


def _drop_old_versions(client: Any, keys: RedisKeys, keep: int) -> tuple[str, ...]:
    """Delete every key of versions past the newest `keep` (never the active one, nor the A/B
    split's treatment)."""
    live = set(_live_versions(client, keys))
    stale = published_versions(client, keys, start=keep)
    removed = []
    for version in stale:
        if version in live:
            continue
        _delete_version_keys(client, keys, version)
        client.lrem(keys.versions, 0, version)
        removed.append(version)
    return tuple(removed)
