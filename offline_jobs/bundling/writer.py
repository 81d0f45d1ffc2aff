"""Write a bundle: every file into a temp directory, checksums into the manifest, one rename."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from prerank_contract.bundle import sha256_file, write_dir_atomically
from prerank_contract.manifest import MANIFEST_FILE, FileEntry, Manifest


def write_bundle(
    bundles_dir: Path, version: str, fill: Callable[[Path], Manifest]
) -> tuple[Path, Manifest]:
    """Create `bundles_dir/version` atomically.

    `fill(tmp_dir)` writes the bundle's files into `tmp_dir` and returns the manifest without
    checksums; this adds the sha256 of every file and writes manifest.json before the directory
    is renamed into place (`write_dir_atomically`).
    """
    final = bundles_dir / version
    written: list[Manifest] = []

    def fill_with_manifest(tmp: Path) -> None:
        manifest = fill(tmp)
        files = {
            path.name: FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
            for path in sorted(tmp.iterdir())
            if path.name != MANIFEST_FILE
        }
        manifest = manifest.model_copy(update={"files": files})
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
        written.append(manifest)

    write_dir_atomically(final, fill_with_manifest)
    return final, written[0]


def relabel_bundle(source: Path, bundles_dir: Path, version: str) -> tuple[Path, Manifest]:
    """A copy of the bundle at `source` as `bundles_dir/version`: the same model and files under
    another version id (a second version to hot-swap to, in soak runs and tests)."""
    manifest = Manifest.model_validate_json((source / MANIFEST_FILE).read_bytes())

    def fill(target: Path) -> Manifest:
        for name in manifest.files:
            shutil.copyfile(source / name, target / name)
        return manifest.model_copy(update={"version": version})

    return write_bundle(bundles_dir, version, fill)
