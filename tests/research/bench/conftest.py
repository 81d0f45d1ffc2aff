"""Fixtures of the benchmark tests: the tiny FIT bundle's catalogue, and the echo floor and the
real service serving it (Redis unused), started once for every test that drives them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from prerank_contract.manifest import ITEM_IDS_FILE
from research.bench.targets import ECHO, ECHO_MODULE, FIT
from research.service_process import ServiceProcess
from tests.conftest import Bundle

MAX_CANDIDATES = 500  # over the tiny catalogue's 300 items


@pytest.fixture(scope="session")
def catalogue(fit_bundle: Bundle) -> np.ndarray:
    return np.load(fit_bundle.path / ITEM_IDS_FILE).astype(np.int64)


@pytest.fixture(scope="session")
def servers(
    fit_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServiceProcess]]:
    """The echo floor and the real service, both on the tiny FIT bundle, Redis unused."""
    logs = tmp_path_factory.mktemp("bench")
    env = {"PRERANK_DEADLINE_MS": "60000"}
    with (
        ServiceProcess.from_bundle_dir(
            fit_bundle.path,
            logs / "echo.log",
            MAX_CANDIDATES,
            env_overrides=env,
            module=ECHO_MODULE,
        ) as echo,
        ServiceProcess.from_bundle_dir(
            fit_bundle.path, logs / "fit.log", MAX_CANDIDATES, env_overrides=env
        ) as fit,
    ):
        yield {ECHO: echo, FIT: fit}
