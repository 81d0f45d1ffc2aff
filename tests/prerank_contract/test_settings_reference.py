"""The generated configuration reference (docs/CONFIGURATION.md) and the known-names list the
entry points read (prerank_contract/setting_names.txt) match the settings classes of today."""

from __future__ import annotations

from research.configuration import generated_files, main, settings_classes
from tests.conftest import REPO_ROOT


def test_the_generated_files_are_current() -> None:
    for path, text in generated_files().items():
        assert path.read_text() == text, (
            f"{path.relative_to(REPO_ROOT)} is out of date: run python -m research.configuration"
        )
    assert main(["--check"]) == 0


def test_settings_classes_are_found_in_every_package() -> None:
    found = {(c.__module__.split(".")[0], c.__name__) for c in settings_classes()}
    assert {
        ("prerank_contract", "CommonSettings"),
        ("service", "ServiceSettings"),
        ("offline_jobs", "JobSettings"),
        ("loadtest", "LoadSettings"),
        ("loadtest", "StackSettings"),
        ("research", "BenchSettings"),
        ("research", "SoakSettings"),
        ("research", "TrainMemorySettings"),
    } <= found
