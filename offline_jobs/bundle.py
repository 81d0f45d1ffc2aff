"""Write a bundle: every file into a temp directory, checksums into the manifest, one rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from prerank_contract.bundle import sha256_file
from prerank_contract.manifest import MANIFEST_FILE, FileEntry, Manifest

CURRENT_LINK = "current"


def write_bundle(
    bundles_dir: Path, version: str, fill: Callable[[Path], Manifest]
) -> tuple[Path, Manifest]:
    """Create `bundles_dir/version` atomically.

    `fill(tmp_dir)` writes the bundle's files into `tmp_dir` and returns the manifest without
    checksums; this adds the sha256 of every file, writes manifest.json, fsyncs, and renames the
    directory into place. On any error the temp directory is removed and nothing is visible.
    """
    bundles_dir.mkdir(parents=True, exist_ok=True)
    final = bundles_dir / version
    if final.exists():
        raise FileExistsError(f"{final}: bundle version already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=bundles_dir))
    try:
        manifest = fill(tmp)
        files = {
            path.name: FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)
            for path in sorted(tmp.iterdir())
            if path.name != MANIFEST_FILE
        }
        manifest = manifest.model_copy(update={"files": files})
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
        for path in tmp.iterdir():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(tmp)
        tmp.rename(final)
        _fsync_dir(bundles_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, manifest


def relabel_bundle(source: Path, bundles_dir: Path, version: str) -> tuple[Path, Manifest]:
    """A copy of the bundle at `source` as `bundles_dir/version`: the same model and files under
    another version id (a second version to hot-swap to, in soak runs and tests)."""
    manifest = Manifest.model_validate_json((source / MANIFEST_FILE).read_bytes())

    def fill(target: Path) -> Manifest:
        for name in manifest.files:
            shutil.copyfile(source / name, target / name)
        return manifest.model_copy(update={"version": version})

    return write_bundle(bundles_dir, version, fill)


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_text_atomically(path: Path, text: str) -> None:
    """Write a small file via a temp file and a rename: readers see the old or the new text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def point_current(bundles_dir: Path, target: Path, link_name: str = CURRENT_LINK) -> Path:
    """Atomically (re)point the `bundles_dir/current` symlink at `target`."""
    link = bundles_dir / link_name
    tmp = bundles_dir / f".{link_name}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, link)
    _fsync_dir(bundles_dir)
    return link
