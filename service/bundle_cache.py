"""The last versions this service loaded from Redis, kept on local disk (PRERANK_BUNDLE_CACHE_DIR),
so a restart while Redis is down still serves the version that was active.

Layout: `<root>/<version>/` (manifest.json + the files, written whole or not at all) and
`<root>/current`, a symlink to the newest. Started from through the same checks as any bundle
(`Snapshot.from_dir`: every sha256, the manifest, the gate, warm-up)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

from prerank_contract.bundle import CURRENT_LINK, point_current, write_dir_atomically
from prerank_contract.manifest import MANIFEST_FILE, Manifest

log = logging.getLogger(__name__)


class BundleCache:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = keep

    def store(self, manifest: Manifest, files: Mapping[str, bytes]) -> Path:
        """Write a verified version (unless already cached), point `current` at it and drop all
        but the newest `keep` versions."""
        target = self.root / manifest.version
        if not (target / MANIFEST_FILE).is_file():

            def fill(tmp: Path) -> None:
                for name, data in files.items():
                    (tmp / name).write_bytes(data)
                (tmp / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))

            shutil.rmtree(target, ignore_errors=True)  # a partial copy is never renamed in
            write_dir_atomically(target, fill)
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
        for stale in [v for v in versions if v != keep][self.keep - 1 :]:
            shutil.rmtree(stale, ignore_errors=True)
            log.info("bundle cache: dropped %s", stale.name)
