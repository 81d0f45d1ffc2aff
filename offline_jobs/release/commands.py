"""The release commands as the CLI and the pipeline run them: each connects with the job's
settings, changes Redis (`publish`, `versions`) and, once that succeeded, enters the change in the
release ledger (`ledger`), which `restore` replays when Redis has lost it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from offline_jobs.data.dataset import InteractionData
from offline_jobs.release.ledger import (
    record_active,
    record_publish,
    record_split,
    record_store,
)
from offline_jobs.release.publish import LiveEvents, publish_bundle, publish_user_features
from offline_jobs.release.versions import clear_split, rollback, set_split
from offline_jobs.settings import JobSettings
from prerank_contract.bundle import read_manifest
from prerank_contract.redis_client import REDIS_ERRORS, RedisClient
from prerank_contract.traffic import TrafficSplit


def redis_client(settings: JobSettings) -> RedisClient | None:
    """A connected client, or None (with one line saying so) when Redis does not answer."""
    try:
        return settings.connect_redis()
    except REDIS_ERRORS as exc:
        print(
            f"Redis at {settings.redis_url_redacted} not reachable ({exc.__class__.__name__}): "
            f"not publishing; the service serves from {settings.bundles_dir / 'current'}"
        )
        return None


def require_redis(settings: JobSettings, purpose: str) -> RedisClient:
    """A connected client; a CLI error naming `purpose` when Redis does not answer."""
    client = redis_client(settings)
    if client is None:
        raise ValueError(f"cannot {purpose}: Redis at {settings.redis_url_redacted} not reachable")
    return client


def publish_options(settings: JobSettings) -> dict[str, Any]:
    """The arguments of `publish_bundle` that the job's settings decide."""
    return {
        "chunk_bytes": settings.publish_chunk_bytes,
        "keep_versions": settings.publish_keep_versions,
        "orphan_min_idle_seconds": settings.publish_orphan_min_idle_seconds,
        "gate": settings.gate,
    }


def publish_version(
    settings: JobSettings,
    client: RedisClient,
    bundle_dir: Path,
    *,
    activate: bool = True,
    override_reason: str | None = None,
    progress: bool = True,
) -> None:
    result = publish_bundle(
        client,
        settings.keys,
        bundle_dir,
        **publish_options(settings),
        activate=activate,
        override_reason=override_reason,
        progress=progress,
    )
    model = read_manifest(bundle_dir).model_name
    record_publish(
        settings.release_ledger, settings.keys.prefix, result, model, bundle_dir, activate
    )
    print(f"published {result.version} to {settings.redis_url_redacted} ({result.action})")


def publish_existing(
    settings: JobSettings,
    bundle_dir: Path,
    *,
    activate: bool = True,
    override_reason: str | None = None,
) -> None:
    if not bundle_dir.is_dir():
        raise FileNotFoundError(f"{bundle_dir}: not a bundle directory")
    client = require_redis(settings, f"publish {bundle_dir}")
    publish_version(
        settings, client, bundle_dir, activate=activate, override_reason=override_reason
    )


def publish_feature_store(
    settings: JobSettings,
    client: RedisClient,
    data: InteractionData,
    version: str,
    *,
    data_read_ms: int | None = None,
    progress: bool = True,
) -> None:
    """Every user's record of `data`, then the store's marker; entered in the ledger. With
    `data_read_ms` (when the job read `data`, Unix ms), each record keeps what the event consumer
    wrote into it since."""
    live = None
    if data_read_ms is not None:
        live = LiveEvents(after_ms=data_read_ms, retries=settings.feature_store_write_retries)
    marker = publish_user_features(
        client,
        settings.keys,
        data,
        settings.feature_store_batch_size,
        version=version,
        progress=progress,
        live=live,
    )
    record_store(settings.release_ledger, settings.keys.prefix, marker)


def roll_back(settings: JobSettings, client: RedisClient, to: str | None) -> str:
    previous, now = rollback(client, settings.keys, to)
    record_active(settings.release_ledger, settings.keys.prefix, now)
    return f"active: {previous} -> {now}"


def split_traffic(settings: JobSettings, client: RedisClient, split: TrafficSplit | None) -> str:
    """Set the A/B split, or remove it (`split` None)."""
    if split is None:
        removed = clear_split(client, settings.keys)
        record_split(settings.release_ledger, settings.keys.prefix, None)
        return "split removed" if removed else "no split set"
    set_split(client, settings.keys, split)
    record_split(settings.release_ledger, settings.keys.prefix, split)
    return f"{100 * split.share:.1f}% of users -> {split.version}"
