"""The release ledger: what the release commands set in Redis, kept on disk beside the bundles, so
that `restore` can put back what a Redis that lost its data forgot.

Redis stays the one thing that decides what serves; the ledger is the jobs' own record of their
commands (publish, rollback, split, feature store), each entered after it succeeded in Redis. It
is not read back from Redis, so a publish made after a loss cannot erase what was lost from it.
One file per artifacts directory (`JobSettings.release_ledger`), one `Release` per Redis key
prefix; written via temp + rename under an exclusive lock, so two jobs never lose an update.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offline_jobs.release.publish import PublishResult
from prerank_contract.bundle import write_text_atomically
from prerank_contract.manifest import GateRecord
from prerank_contract.markers import StoreMarker, utc_now
from prerank_contract.traffic import TrafficSplit

LEDGER_FORMAT = 1


class LedgerError(Exception):
    """The ledger cannot be read: the message names the file and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishedVersion(_Strict):
    """One version as it was published."""

    version: str
    model: str
    bundle: str = Field(description="absolute path of the bundle directory it was published from")
    gate: GateRecord | None = Field(
        default=None, description="the gate's decision at publish time (absent: not recorded)"
    )


class Release(_Strict):
    """What the release commands last set under one key prefix."""

    versions: list[PublishedVersion] = Field(
        default_factory=list, description="newest first, as `RedisKeys.versions` lists them"
    )
    active: str | None = None
    split: TrafficSplit | None = None
    stores: dict[str, StoreMarker] = Field(
        default_factory=dict, description="the last feature store written, by schema fingerprint"
    )
    updated_at: str | None = None

    def entry(self, version: str) -> PublishedVersion | None:
        return next((v for v in self.versions if v.version == version), None)


class Ledger(_Strict):
    format_version: int = LEDGER_FORMAT
    releases: dict[str, Release] = Field(default_factory=dict, description="by key prefix")


def read_ledger(path: Path) -> Ledger:
    """The ledger at `path`; an empty one when there is no file yet."""
    if not path.is_file():
        return Ledger()
    try:
        ledger = Ledger.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise LedgerError(f"{path}: not a release ledger: {exc}") from exc
    if ledger.format_version != LEDGER_FORMAT:
        raise LedgerError(
            f"{path}: ledger format {ledger.format_version}, this code reads {LEDGER_FORMAT}"
        )
    return ledger


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_release(path: Path, prefix: str, change: Callable[[Release], None]) -> Release:
    """Apply `change` to the release of `prefix` and write the ledger back atomically."""
    with _locked(path):
        ledger = read_ledger(path)
        release = ledger.releases.setdefault(prefix, Release())
        change(release)
        release.updated_at = utc_now()
        write_text_atomically(path, ledger.model_dump_json(indent=2))
        return release


def record_publish(
    path: Path, prefix: str, result: PublishResult, model: str, bundle_dir: Path, activated: bool
) -> None:
    """A publish that succeeded: its version first in the list (with its gate decision), the
    versions retention dropped gone, and the pointer on it when it was activated."""

    def change(release: Release) -> None:
        gate = result.gate
        if gate is None and (previous := release.entry(result.version)) is not None:
            gate = previous.gate  # re-activated, not re-gated: its first decision stands
        entry = PublishedVersion(
            version=result.version, model=model, bundle=str(bundle_dir.resolve()), gate=gate
        )
        dropped = {result.version, *result.removed_versions}
        release.versions = [entry, *(v for v in release.versions if v.version not in dropped)]
        if activated or result.action == "already_active":
            release.active = result.version

    update_release(path, prefix, change)


def record_active(path: Path, prefix: str, version: str) -> None:
    def change(release: Release) -> None:
        release.active = version

    update_release(path, prefix, change)


def record_split(path: Path, prefix: str, split: TrafficSplit | None) -> None:
    def change(release: Release) -> None:
        release.split = split

    update_release(path, prefix, change)


def record_store(path: Path, prefix: str, marker: StoreMarker) -> None:
    def change(release: Release) -> None:
        release.stores[marker.schema_fingerprint] = marker

    update_release(path, prefix, change)
