"""Operating published versions: list them, roll back, set the A/B split.

Every command reads and writes only the Redis contract (`prerank_contract.keys`): the `active`
pointer stays the one thing that decides what the service serves, the `split` key the one thing
that sends a share of users to a second, treatment version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from offline_jobs.release.publish import CHUNKS_PER_PIPELINE
from prerank_contract.bundle import BundleError
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import Manifest
from prerank_contract.redis_store import (
    active_version,
    check_version,
    published_versions,
    read_manifest_of,
    read_split,
)
from prerank_contract.traffic import TrafficSplit

log = logging.getLogger(__name__)


class LifecycleError(Exception):
    """A lifecycle command that cannot be carried out: nothing was changed."""


@dataclass(frozen=True)
class VersionInfo:
    """One published version as `versions` shows it."""

    version: str
    manifest: Manifest | None
    active: bool
    treatment_share: float | None
    problem: str | None = None


def list_versions(client: Any, keys: RedisKeys) -> list[VersionInfo]:
    """Every published version with its manifest (None and a problem when it cannot be read)."""
    active = active_version(client, keys)
    try:
        split = read_split(client, keys)
    except ValueError as exc:
        log.warning("%s", exc)
        split = None
    infos = []
    for version in published_versions(client, keys):
        manifest, problem = None, None
        try:
            manifest = read_manifest_of(client, keys, version)
            if manifest is None:
                problem = "no manifest"
        except BundleError as exc:
            problem = str(exc)
        share = split.share if split is not None and split.version == version else None
        infos.append(VersionInfo(version, manifest, version == active, share, problem))
    return infos


def activate(client: Any, keys: RedisKeys, version: str) -> str | None:
    """Point `active` at a published version after checking it reads back intact; returns the
    version it replaced. Versions were gated when published; this only re-activates one."""
    if version not in published_versions(client, keys):
        raise LifecycleError(f"{version!r} is not a published version (see `versions`)")
    try:
        check_version(client, keys, version, CHUNKS_PER_PIPELINE)
    except BundleError as exc:
        raise LifecycleError(f"{version} cannot be activated: {exc}") from exc
    previous = active_version(client, keys)
    client.set(keys.active, version)
    log.info("active: %s -> %s", previous, version)
    return previous


def rollback(client: Any, keys: RedisKeys, to: str | None = None) -> tuple[str | None, str]:
    """Re-activate `to`, or by default the version published just before the active one.

    Returns (previous active, now active)."""
    if to is None:
        versions = published_versions(client, keys)
        active = active_version(client, keys)
        if active not in versions:
            raise LifecycleError(f"active version {active!r} is not in {keys.versions}")
        older = versions[versions.index(active) + 1 :]
        if not older:
            raise LifecycleError(f"no version older than {active} is published")
        to = older[0]
    return activate(client, keys, to), to


def set_split(client: Any, keys: RedisKeys, split: TrafficSplit) -> None:
    """Send `split.share` of users to `split.version` (published, intact, not the active one)."""
    if split.version not in published_versions(client, keys):
        raise LifecycleError(f"{split.version!r} is not a published version (see `versions`)")
    if split.version == active_version(client, keys):
        raise LifecycleError(f"{split.version} is the active version; split to another one")
    try:
        check_version(client, keys, split.version, CHUNKS_PER_PIPELINE)
    except BundleError as exc:
        raise LifecycleError(f"{split.version} cannot take traffic: {exc}") from exc
    client.set(keys.split, split.model_dump_json())
    log.info("A/B split: %.1f%% of users -> %s", 100 * split.share, split.version)


def clear_split(client: Any, keys: RedisKeys) -> bool:
    """Remove the A/B split (every user back on the active version); True when one was set."""
    return bool(client.delete(keys.split))
