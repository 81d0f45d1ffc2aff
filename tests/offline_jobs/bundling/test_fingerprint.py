"""What decides bundle reuse: the config fingerprint covers settings, data and code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from offline_jobs.bundling import fingerprint
from offline_jobs.settings import JobSettings


def test_fingerprint_changes_with_settings_data_and_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = JobSettings()
    base = fingerprint.config_fingerprint(settings, "fit", "data-a")
    assert base == fingerprint.config_fingerprint(settings, "fit", "data-a")
    assert base != fingerprint.config_fingerprint(settings, "fit", "data-b")
    assert base != fingerprint.config_fingerprint(settings, "two_tower", "data-a")
    epochs = settings.model_copy(update={"train": settings.train.model_copy(update={"epochs": 9})})
    assert base != fingerprint.config_fingerprint(epochs, "fit", "data-a")
    # trained by 2 DDP ranks: other weights, another fingerprint; one process: unchanged
    assert base != fingerprint.config_fingerprint(settings, "fit", "data-a", training_ranks=2)
    assert base == fingerprint.config_fingerprint(settings, "fit", "data-a", training_ranks=1)

    # A copy of the code: same fingerprint; one edited line in the model package: another one.
    for source in (*fingerprint.CODE_PACKAGES, "offline_jobs/release"):
        origin, copy = fingerprint.REPO_ROOT / source, tmp_path / source
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, copy)
        else:
            shutil.copyfile(origin, copy)
    monkeypatch.setattr(fingerprint, "REPO_ROOT", tmp_path)
    assert fingerprint.config_fingerprint(settings, "fit", "data-a") == base
    # publishing decides nothing in a bundle: editing it keeps every bundle reusable
    publish = tmp_path / "offline_jobs" / "release" / "publish.py"
    publish.write_text(publish.read_text() + "\n# edited\n")
    assert fingerprint.config_fingerprint(settings, "fit", "data-a") == base
    layer = tmp_path / "prerank_model" / "layers" / "scorers.py"
    layer.write_text(layer.read_text() + "\n# edited\n")
    assert fingerprint.config_fingerprint(settings, "fit", "data-a") != base
