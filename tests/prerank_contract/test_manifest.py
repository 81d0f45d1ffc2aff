"""The manifest records what built a bundle, and still reads manifests written before it did."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import torch

from prerank_contract.bundle import parse_manifest
from prerank_contract.manifest import FORMAT_VERSION, MANIFEST_FILE


def test_a_built_bundle_records_its_format_and_framework_versions(fit_bundle) -> None:
    manifest = parse_manifest((fit_bundle.path / MANIFEST_FILE).read_bytes(), "test")
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.frameworks is not None
    assert manifest.frameworks.model_dump() == {
        "torch": str(torch.__version__),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def test_a_manifest_written_before_framework_versions_were_recorded_still_loads(
    fit_bundle,
) -> None:
    raw = json.loads((fit_bundle.path / MANIFEST_FILE).read_text())
    del raw["frameworks"]
    manifest = parse_manifest(json.dumps(raw), "test")
    assert manifest.frameworks is None
    assert manifest.version == fit_bundle.manifest.version
