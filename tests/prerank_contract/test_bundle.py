"""Bundle verification: a corrupted, truncated or missing file is refused, naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prerank_contract.bundle import BundleError, verify_bundle_dir, verify_files
from prerank_contract.manifest import ITEM_HEADS_FILE, SCORER_FILE


@pytest.fixture
def bundle_copy(fit_bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fit_bundle.path, tmp_path / "bundle"))


def test_intact_bundle_verifies(fit_bundle) -> None:
    manifest = verify_bundle_dir(fit_bundle.path)
    assert manifest.version == fit_bundle.manifest.version
    assert set(manifest.files) >= {SCORER_FILE, ITEM_HEADS_FILE, "user_tower.onnx"}


def test_flipped_byte_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / ITEM_HEADS_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=ITEM_HEADS_FILE):
        verify_bundle_dir(bundle_copy)


def test_truncated_graph_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / SCORER_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match=r"scorer\.onnx.*sha256"):
        verify_bundle_dir(bundle_copy)


def test_missing_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / SCORER_FILE).unlink()
    with pytest.raises(BundleError, match="missing"):
        verify_bundle_dir(bundle_copy)


def test_unknown_format_version_is_refused(bundle_copy: Path) -> None:
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format 99"):
        verify_bundle_dir(bundle_copy)


def test_in_memory_files_are_checked(fit_bundle) -> None:
    files = {name: (fit_bundle.path / name).read_bytes() for name in fit_bundle.manifest.files}
    verify_files(fit_bundle.manifest, files, "memory")
    files[SCORER_FILE] = files[SCORER_FILE] + b"x"
    with pytest.raises(BundleError, match=SCORER_FILE):
        verify_files(fit_bundle.manifest, files, "memory")
