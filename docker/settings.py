"""Typed settings of the container tools: the image builds of ``python -m docker.images``
(``PRERANK_IMAGES_*``) and the compose stack under podman of ``python -m docker.compose``
(``PRERANK_COMPOSE_*``), beside the common Redis settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from prerank_contract.settings import CommonSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


class ContainerSettings(CommonSettings):
    """How podman builds the images (a Debian base where the pinned one cannot be pulled, pip
    through the host's network and CA bundle, torch from a local CPU wheel) and runs the stack."""

    images_state_dir: Path = Field(
        default=REPO_ROOT / "artifacts" / "images",
        description="the Debian base's root filesystem, podman's config, build logs, the "
        "generated compose file",
    )
    images_install_podman: bool = Field(
        default=True,
        description="apt-get install podman, runc, mmdebstrap and podman-compose when missing "
        "(as root)",
    )
    images_runtime: str = Field(
        default="runc",
        description="podman's OCI runtime (crun, its default, refuses hybrid cgroups)",
    )
    images_build_network: str = Field(
        default="host",
        description="network of the build steps: pip inside a build reaches the package index "
        "as the host does",
    )
    images_ca_bundle: Path | None = Field(
        default=Path("/etc/ssl/certs/ca-certificates.crt"),
        description="the host's CA bundle, mounted read-only at the same path into every build "
        "step (the index may be reached through a proxy only it trusts); unset: none",
    )
    images_torch_wheels_dir: Path | None = Field(
        default=None,
        description="folder holding the CPU torch wheel for the offline image (default: the "
        "folder of pip's find-links that holds one; none: PyTorch's CPU index)",
    )
    images_debian_suite: str = Field(
        default="bookworm",
        description="Debian release of the base built when the pinned Python image cannot be "
        "pulled (the pinned one is bookworm's)",
    )
    images_base_packages: tuple[str, ...] = Field(
        default=("python3", "python3-venv", "python-is-python3", "ca-certificates"),
        min_length=1,
        description="what mmdebstrap installs into that base (`python` and venv, as the pinned "
        "image has them)",
    )
    images_command_timeout_seconds: float = Field(
        default=1800.0, gt=0, description="longest single build or install"
    )
    images_pull_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="longest pull of a pinned image before it counts as unreachable",
    )
    compose_project: str | None = Field(
        default=None, description="podman-compose project (default: docker-compose.yml's name)"
    )
    compose_bind_host: str = Field(
        default="127.0.0.1", description="address the stack's published ports are bound to"
    )
    compose_ready_timeout_seconds: float = Field(
        default=900.0,
        gt=0,
        description="how long one service may take to start, be healthy or complete (the "
        "offline job trains)",
    )
    compose_poll_seconds: float = Field(
        default=2.0, gt=0, description="between health checks and state reads while starting"
    )
