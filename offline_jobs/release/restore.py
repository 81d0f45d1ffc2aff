"""Restore: put back into Redis what the release ledger says was there and Redis no longer holds.

In order, each step leaving alone what is still there (so a second run writes nothing):
1. every recorded version, oldest first, from its bundle on disk (the artifacts, or a service's
   bundle cache): gated as publish gates, against the version it was compared with when first
   published (its recorded override, if any, stands), and never activated here; then the list
   of versions in the recorded order;
2. the feature store of each live version's schema, regenerated from the dataset the settings
   load, and written only when its records' checksum equals the recorded one;
3. the active pointer, when Redis has none (an existing pointer is an operator's: left alone);
4. the A/B split, when Redis has none.

Safe while services serve: a version written inactive is invisible to them, rewritten records are
the same bytes, and the pointer only comes back to the version they kept serving from memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.sources import load_dataset
from offline_jobs.release.commands import publish_options
from offline_jobs.release.ledger import LedgerError, PublishedVersion, Release, read_ledger
from offline_jobs.release.publish import (
    CHUNKS_PER_PIPELINE,
    PublishError,
    publish_bundle,
    publish_user_features,
    records_digest,
)
from offline_jobs.release.versions import LifecycleError, activate, set_split
from offline_jobs.settings import JobSettings
from prerank_contract.bundle import BundleError, read_manifest
from prerank_contract.keys import RedisKeys
from prerank_contract.manifest import MANIFEST_FILE, Manifest
from prerank_contract.markers import StoreMarker, VersionMarker, read_marker
from prerank_contract.redis_client import RedisClient
from prerank_contract.redis_store import (
    active_version,
    check_version,
    published_versions,
    read_split,
)

log = logging.getLogger(__name__)


@dataclass
class RestoreReport:
    """One line per thing restore looked at; `problems` name what it could not put back."""

    done: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def restore_release(
    settings: JobSettings,
    client: RedisClient,
    *,
    bundle_dirs: Sequence[Path] = (),
    progress: bool = True,
) -> RestoreReport:
    """Put back what the ledger of `settings` records for its key prefix; bundles are looked for
    where they were published from, then in `bundle_dirs`, then in the artifacts."""
    keys = settings.keys
    release = read_ledger(settings.release_ledger).releases.get(keys.prefix)
    if release is None or not release.versions:
        raise LedgerError(
            f"{settings.release_ledger}: no release recorded for the key prefix {keys.prefix!r} "
            "(restore puts back what publish, rollback and split entered there)"
        )
    search = (*bundle_dirs, settings.bundles_dir)
    report = RestoreReport()
    manifests = _restore_versions(settings, client, release, search, progress, report)
    _restore_order(client, keys, release, report)
    live = {release.active, None if release.split is None else release.split.version}
    schemas = {m.feature_store for v, m in manifests.items() if v in live}
    _restore_stores(settings, client, release, schemas, progress, report)
    _restore_pointer(client, keys, release, report)
    _restore_split(client, keys, release, report)
    return report


def find_bundle(entry: PublishedVersion, search: Sequence[Path]) -> Path | None:
    """The bundle directory of `entry`'s version: where it was published from, else
    `<dir>/<version>` in one of `search` (the layout of the artifacts and of a bundle cache)."""
    for candidate in (Path(entry.bundle), *(root / entry.version for root in search)):
        if (candidate / MANIFEST_FILE).is_file():
            try:
                if read_manifest(candidate).version == entry.version:
                    return candidate
            except BundleError as exc:
                log.warning("%s", exc)
    return None


def version_intact(client: RedisClient, keys: RedisKeys, version: str) -> bool:
    """The version's marker is there and every file reads back with its checksum."""
    if read_marker(client, keys.version_marker(version), VersionMarker) is None:
        return False
    try:
        check_version(client, keys, version, CHUNKS_PER_PIPELINE)
    except BundleError:
        return False
    return True


def _restore_versions(
    settings: JobSettings,
    client: RedisClient,
    release: Release,
    search: Sequence[Path],
    progress: bool,
    report: RestoreReport,
) -> dict[str, Manifest]:
    """Step 1, oldest first so the list comes back in its order; returns the manifests found."""
    bundles = {e.version: find_bundle(e, search) for e in release.versions}
    manifests = {v: read_manifest(path) for v, path in bundles.items() if path is not None}
    for entry in reversed(release.versions):
        version, bundle_dir = entry.version, bundles[entry.version]
        if version_intact(client, settings.keys, version):
            report.done.append(f"version {version}: intact")
            continue
        if bundle_dir is None:
            report.problems.append(
                f"version {version}: no bundle found at {entry.bundle} nor under "
                + ", ".join(str(root) for root in search)
            )
            continue
        gate = entry.gate
        baseline = None if gate is None or gate.compared_with is None else gate.compared_with
        try:
            publish_bundle(
                client,
                settings.keys,
                bundle_dir,
                **publish_options(settings),
                activate=False,
                override_reason=None if gate is None else gate.override_reason,
                baseline=None if baseline is None else manifests.get(baseline),
                progress=progress,
            )
        except (BundleError, PublishError) as exc:  # the gate's refusal is a PublishError too
            report.problems.append(f"version {version}: {exc}")
            continue
        report.done.append(f"version {version}: restored (from {bundle_dir})")
    return manifests


def _restore_order(
    client: RedisClient, keys: RedisKeys, release: Release, report: RestoreReport
) -> None:
    """Step 1, last: the version list newest first as recorded (a version published after the
    loss was pushed before the older ones came back). Versions Redis lists and the ledger does
    not (published from another artifacts directory) stay first, as the newest."""
    listed = published_versions(client, keys)
    recorded = [v.version for v in release.versions if v.version in listed]
    wanted = [v for v in listed if v not in recorded] + recorded
    if listed == wanted:
        return
    pipe = client.pipeline(transaction=True)  # readers never see the list half rewritten
    pipe.delete(keys.versions)
    pipe.rpush(keys.versions, *wanted)
    pipe.execute()
    report.done.append(f"version list: {', '.join(wanted)} restored")


def _restore_stores(
    settings: JobSettings,
    client: RedisClient,
    release: Release,
    schemas: set[str],
    progress: bool,
    report: RestoreReport,
) -> None:
    """Step 2: the store of every schema a live version reads, from the dataset."""
    data: InteractionData | None = None
    for schema in sorted(schemas):
        recorded = release.stores.get(schema)
        if recorded is None:
            report.problems.append(f"feature store {schema}: never published from this ledger")
            continue
        marker = read_marker(client, settings.keys.store_marker(schema), StoreMarker)
        if marker is not None and marker.records_sha256 == recorded.records_sha256:
            report.done.append(f"feature store {schema}: intact")
            continue
        if data is None:
            data = load_dataset(settings, progress=progress)
        problem = _store_mismatch(data, recorded)
        if problem is not None:
            report.problems.append(f"feature store {schema}: {problem}")
            continue
        try:
            publish_user_features(
                client,
                settings.keys,
                data,
                settings.feature_store_batch_size,
                version=recorded.version,
                progress=progress,
            )
        except PublishError as exc:
            report.problems.append(f"feature store {schema}: {exc}")
            continue
        report.done.append(f"feature store {schema}: {recorded.records} records restored")


def _store_mismatch(data: InteractionData, recorded: StoreMarker) -> str | None:
    """Why `data` would not write back the recorded store, or None when it would."""
    if data.feature_store != recorded.schema_fingerprint:
        return (
            f"the settings load {data.name!r}, whose feature store is "
            f"{data.feature_store}: run restore with the settings of the job that published "
            f"the store (dataset {recorded.dataset!r})"
        )
    if recorded.records_sha256 is None:
        return "its checksum was not recorded, so records from the dataset cannot be checked"
    digest = records_digest(data)
    if digest != recorded.records_sha256:
        return (
            f"the records from dataset {data.name!r} (sha256 {digest[:12]}) differ from those "
            f"published (sha256 {recorded.records_sha256[:12]}): the data changed since"
        )
    return None


def _restore_pointer(
    client: RedisClient, keys: RedisKeys, release: Release, report: RestoreReport
) -> None:
    """Step 3."""
    if release.active is None:
        return
    current = active_version(client, keys)
    if current is not None:
        note = "" if current == release.active else f" (the ledger says {release.active}: kept)"
        report.done.append(f"active pointer: {current}{note}")
        return
    try:
        activate(client, keys, release.active)
    except LifecycleError as exc:
        report.problems.append(f"active pointer: {exc}")
        return
    report.done.append(f"active pointer: {release.active} restored")


def _restore_split(
    client: RedisClient, keys: RedisKeys, release: Release, report: RestoreReport
) -> None:
    """Step 4."""
    if release.split is None:
        return
    try:
        current = read_split(client, keys)
    except ValueError:
        current = None  # unreadable: rewritten from the ledger
    if current is not None:
        report.done.append(f"A/B split: {current.version} at {current.share:.1%}")
        return
    try:
        set_split(client, keys, release.split)
    except LifecycleError as exc:
        report.problems.append(f"A/B split: {exc}")
        return
    report.done.append(f"A/B split: {release.split.version} at {release.split.share:.1%} restored")
