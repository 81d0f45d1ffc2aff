"""The jobs' CLI brings torch only to train: the release commands and the settings start without
it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    "module", ["offline_jobs.__main__", "offline_jobs.settings", "offline_jobs.release.restore"]
)
def test_the_module_imports_no_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "False"
