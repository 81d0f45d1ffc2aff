"""Reading and verifying a bundle: a directory (or an in-memory set of files) plus its manifest."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from prerank_contract.manifest import MANIFEST_FILE, READABLE_FORMAT_VERSIONS, Manifest

_HASH_CHUNK_BYTES = 1 << 20


class BundleError(Exception):
    """A bundle that must not be loaded: the message names the file and the problem."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_manifest(raw: bytes | str, origin: str) -> Manifest:
    """Parse and validate a manifest; refuse a format this code does not understand."""
    try:
        manifest = Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise BundleError(f"{origin}: invalid manifest: {exc}") from exc
    if manifest.format_version not in READABLE_FORMAT_VERSIONS:
        raise BundleError(
            f"{origin}: manifest format {manifest.format_version}, this code reads "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}"
        )
    return manifest


def read_manifest(bundle_dir: Path) -> Manifest:
    path = bundle_dir / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{path}: missing manifest")
    return parse_manifest(path.read_bytes(), str(path))


def verify_bundle_dir(bundle_dir: Path) -> Manifest:
    """Check every file listed in the manifest against its sha256; return the manifest."""
    manifest = read_manifest(bundle_dir)
    for name, entry in manifest.files.items():
        path = bundle_dir / name
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing")
        if sha256_file(path) != entry.sha256:
            raise BundleError(f"{path}: sha256 mismatch (corrupted or truncated)")
    return manifest


def verify_files(manifest: Manifest, files: Mapping[str, bytes], origin: str) -> None:
    """The in-memory twin of `verify_bundle_dir`, for a bundle read from Redis."""
    for name, entry in manifest.files.items():
        if name not in files:
            raise BundleError(f"{origin}/{name}: listed in the manifest but missing")
        if sha256_bytes(files[name]) != entry.sha256:
            raise BundleError(f"{origin}/{name}: sha256 mismatch (corrupted or truncated)")


CURRENT_LINK = "current"  # bundles_dir/current -> the bundle to serve


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_dir_atomically(final: Path, fill: Callable[[Path], None]) -> None:
    """Create the directory `final` whole or not at all: `fill(tmp)` writes the files into a
    sibling temp directory, every file is fsynced, and one rename publishes it. On any error the
    temp directory is removed and nothing is visible."""
    if final.exists():
        raise FileExistsError(f"{final}: already exists")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        fill(tmp)
        for path in tmp.iterdir():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(tmp)
        tmp.rename(final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def point_current(bundles_dir: Path, target: Path) -> Path:
    """Atomically (re)point the `bundles_dir/current` symlink at `target` (a child of it)."""
    link = bundles_dir / CURRENT_LINK
    tmp = bundles_dir / f".{CURRENT_LINK}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, link)
    fsync_dir(bundles_dir)
    return link


def write_text_atomically(path: Path, text: str) -> None:
    """Write a small file via a temp file and a rename: readers see the old or the new text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
