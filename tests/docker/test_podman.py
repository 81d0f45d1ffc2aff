"""podman as the container tools configure it: a containers.conf within this machine's limits,
and a clear reason where podman cannot be had."""

from __future__ import annotations

import resource
import tomllib
from pathlib import Path

import pytest

from docker.podman import (
    PID_MAX,
    RLIMITS,
    ContainersUnavailableError,
    containers_conf,
    find_or_install_tools,
)
from docker.settings import ContainerSettings


def test_containers_conf_names_the_runtime_and_ulimits_within_the_hard_limits(
    tmp_path: Path,
) -> None:
    settings = ContainerSettings(images_state_dir=tmp_path, images_runtime="runc")
    conf = tomllib.loads(containers_conf(settings).read_text())
    assert conf["engine"]["runtime"] == "runc"
    ulimits = dict(item.split("=") for item in conf["containers"]["default_ulimits"])
    for name, limit in RLIMITS.items():
        hard = resource.getrlimit(limit)[1]
        if hard == resource.RLIM_INFINITY:
            continue
        soft_value, hard_value = map(int, ulimits[name].split(":"))
        assert soft_value == hard_value <= hard, name
    if PID_MAX.is_file():
        assert int(ulimits["nproc"].split(":")[1]) <= int(PID_MAX.read_text())


def test_missing_podman_is_a_reason_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no podman, no apt-get
    with pytest.raises(ContainersUnavailableError, match="no apt-get"):
        find_or_install_tools(ContainerSettings(images_state_dir=tmp_path), tmp_path)
    refused = ContainerSettings(images_state_dir=tmp_path, images_install_podman=False)
    with pytest.raises(ContainersUnavailableError, match="IMAGES_INSTALL_PODMAN=false"):
        find_or_install_tools(refused, tmp_path)
