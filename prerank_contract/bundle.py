"""Reading and verifying a bundle: a directory (or an in-memory set of files) plus its manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from prerank_contract.manifest import FORMAT_VERSION, MANIFEST_FILE, Manifest

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
    if manifest.format_version != FORMAT_VERSION:
        raise BundleError(
            f"{origin}: manifest format {manifest.format_version}, this code reads {FORMAT_VERSION}"
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
