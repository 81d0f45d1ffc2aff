"""The last versions this service loaded from Redis, kept on local disk (PRERANK_BUNDLE_CACHE_DIR),
so a restart while Redis is down still serves the version that was active.

Layout: `<root>/<version>/` (manifest.json + the files, written whole or not at all) and
`<root>/current`, a symlink to the newest. Started from through the same checks as any bundle
(`Snapshot.from_dir`: every sha256, the manifest, the gate, warm-up)."""

from __future__ import annotations

import fcntl
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

from prerank_contract.bundle import CURRENT_LINK, point_current, write_dir_atomically
from prerank_contract.manifest import MANIFEST_FILE, Manifest

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class BundleCache:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep

    def store(
        self, manifest: Manifest, files: Mapping[str, bytes], make_current: bool = True
    ) -> Path:
        """Write a verified version (unless already cached), point `current` at it (the active
        version) and drop all but the newest `keep` versions. Workers of one service share the
        cache: a file lock makes each store whole and one at a time."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / manifest.version
        with (self.root / LOCK_FILE).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / MANIFEST_FILE).is_file():

                def fill(tmp: Path) -> None:
                    for name, data in files.items():
                        (tmp / name).write_bytes(data)
                    (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))

                shutil.rmtree(target, ignore_errors=True)
                write_dir_atomically(target, fill)
            if make_current:
                point_current(self.root, target)
            self._prune(keep=target)
        return target

    def current(self) -> Path | None:
        """The newest cached version's directory, if any."""
        link = self.root / CURRENT_LINK
        return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None

    def _prune(self, keep: Path) -> None:
        versions = sorted(
            (
                p
                for p in self.root.iterdir()
                if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
            ),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        current = self.current()
        for stale in [v for v in versions if v not in (keep, current)][self.keep - 1 :]:
            shutil.rmtree(stale, ignore_errors=True)
            log.info("bundle cache: dropped %s", stale.name)
