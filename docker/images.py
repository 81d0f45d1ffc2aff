"""``python -m docker.images`` (``make images``): the service and offline images of
docker-compose.yml built with podman, in the docker format (the OCI format drops HEALTHCHECK).

Each Dockerfile's pinned Python base (its `PYTHON_IMAGE` argument) is used when podman has it or
can pull it; where no registry can be reached, a base is built once from Debian's packages
(mmdebstrap, then `podman import`) and the log says so. pip inside a build reaches the package
index through the host's network and CA bundle; the offline image's torch is the CPU wheel this
machine's pip finds, else PyTorch's CPU index (never PyPI's CUDA build). The same Debian base
carries the stand-ins for the stack's pulled images (Redis, Prometheus) that cannot be pulled.
Layers are cached: a second build of unchanged sources takes seconds."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from docker.podman import ContainersUnavailableError, Podman, PodmanError, find_or_install_tools
from docker.settings import REPO_ROOT, ContainerSettings
from prerank_contract.settings import ENV_PREFIX, configure_logging, load_settings

log = logging.getLogger("docker.images")

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
REQUIREMENTS = REPO_ROOT / "requirements.txt"
STANDIN_DIR = Path(__file__).with_name("standins")  # Dockerfile.<compose service>
BASE_ARG = "PYTHON_IMAGE"  # the Dockerfiles' pinned base
STANDIN_BASE_ARG = "BASE_IMAGE"  # the stand-ins' base: always the Debian one
TORCH_WHEELS_ARG = "TORCH_WHEELS"  # declared by a Dockerfile that installs torch
TORCH_WHEELS_MOUNT = "/tmp/torch-wheels"  # where a build step sees the wheel folder
DEBIAN_BASE = "localhost/prerank-debian-python"
DEFAULT_REGISTRY = "docker.io"  # how Docker reads an image name without a registry


@dataclass(frozen=True)
class ImageBuild:
    """An image docker-compose.yml builds: its tag (compose's `image:`) and Dockerfile."""

    tag: str
    dockerfile: Path

    @property
    def name(self) -> str:
        return self.tag.split(":")[0].removeprefix("prerank-")


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


def project_images() -> list[ImageBuild]:
    """The images compose builds, once each (services may share one)."""
    found: dict[str, ImageBuild] = {}
    for service in compose_services().values():
        if "build" in service:
            build = service["build"]
            dockerfile = (REPO_ROOT / build["context"] / build["dockerfile"]).resolve()
            found.setdefault(service["image"], ImageBuild(service["image"], dockerfile))
    return list(found.values())


def dockerfile_arg(dockerfile: Path, name: str) -> str | None:
    """The default of `ARG NAME=default` in `dockerfile` ("" when declared without one)."""
    found = re.search(rf"^ARG {name}(?:=(\S*))?\s*$", dockerfile.read_text(), re.MULTILINE)
    return None if found is None else (found.group(1) or "").strip('"')


def qualified(image: str) -> str:
    """`image` with the registry Docker assumes: redis:7 -> docker.io/library/redis:7."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"{DEFAULT_REGISTRY}/{image if rest else 'library/' + image}"


def obtain(podman: Podman, image: str) -> str | None:
    """None when podman has `image` or could pull it; otherwise why not."""
    if podman.image_exists(image) or podman.image_exists(qualified(image)):
        return None
    try:
        timeout = podman.settings.images_pull_timeout_seconds
        podman.run(["pull", "--quiet", qualified(image)], timeout=timeout)
    except PodmanError as exc:
        return str(exc).splitlines()[-1]
    return None


def debian_base(podman: Podman, settings: ContainerSettings) -> str:
    """A Python base from Debian's packages, built once per suite and package list."""
    spec = json.dumps([settings.images_debian_suite, sorted(settings.images_base_packages)])
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    tag = f"{DEBIAN_BASE}:{settings.images_debian_suite}-{digest}"
    if podman.image_exists(tag):
        log.info("Debian base %s already built", tag)
        return tag
    state = settings.images_state_dir
    rootfs = state / f"{tag.rpartition(':')[2]}.tar"
    started = time.monotonic()
    log.info("building the Debian base %s with mmdebstrap (%s)", tag, spec)
    podman.run(
        [
            *("--variant=minbase", f"--include={','.join(settings.images_base_packages)}"),
            *(settings.images_debian_suite, str(rootfs)),
        ],
        program="mmdebstrap",
        log_path=state / "logs" / "mmdebstrap.log",
    )
    try:
        podman.run(["import", "--change", 'CMD ["python"]', str(rootfs), tag], quiet=True)
    finally:
        rootfs.unlink(missing_ok=True)
    log.info("Debian base %s built in %.0f s", tag, time.monotonic() - started)
    return tag


def check_containers_run(podman: Podman, image: str) -> None:
    """A container of `image` starts and exits 0, or containers cannot run here."""
    try:
        podman.run(["run", "--rm", image, "python", "-c", "pass"], quiet=True)
    except PodmanError as exc:
        raise ContainersUnavailableError(f"a container does not start: {exc}") from exc


def pip_find_links() -> list[Path]:
    """Local folders pip searches for wheels on this machine (its `find-links`, from any config
    file or PIP_FIND_LINKS)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    )
    folders = []
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".find-links"):
            for link in value.strip("'\"").split():
                folder = Path(link.removeprefix("file://"))
                if "://" not in link.removeprefix("file://") and folder.is_dir():
                    folders.append(folder)
    return folders


def torch_version() -> str:
    found = re.search(r"^torch==(\S+)", REQUIREMENTS.read_text(), re.MULTILINE)
    if found is None:
        raise ValueError(f"{REQUIREMENTS}: no `torch==` pin")
    return found.group(1)


def torch_wheels_dir(settings: ContainerSettings) -> Path | None:
    """The folder holding the CPU wheel of the pinned torch, or None (PyTorch's CPU index)."""
    pattern = f"torch-{torch_version()}+cpu-*.whl"
    configured = settings.images_torch_wheels_dir
    for folder in [configured] if configured is not None else pip_find_links():
        if wheels := sorted(folder.glob(pattern)):
            log.info("torch for the offline image: %s (local CPU wheel)", wheels[0])
            return folder
    if configured is not None:
        raise ValueError(f"{ENV_PREFIX}IMAGES_TORCH_WHEELS_DIR={configured} holds no {pattern}")
    log.info("no local %s in pip's find-links: torch comes from PyTorch's CPU index", pattern)
    return None


def build(
    podman: Podman,
    settings: ContainerSettings,
    dockerfile: Path,
    tag: str,
    build_args: dict[str, str],
    mounts: dict[Path, str],
) -> float:
    """`podman build` of `dockerfile` (context: the repository root) tagged `tag`; seconds."""
    args = ["build", "--format", "docker", "--layers", "--network", settings.images_build_network]
    ignore = dockerfile.with_name(f"{dockerfile.name}.dockerignore")
    if ignore.is_file():  # what BuildKit reads beside the Dockerfile; podman needs telling
        args += ["--ignorefile", str(ignore)]
    if settings.images_ca_bundle is not None and settings.images_ca_bundle.is_file():
        mounts = {settings.images_ca_bundle: str(settings.images_ca_bundle)} | mounts
    args += [f"--volume={source}:{target}:ro" for source, target in mounts.items()]
    args += [f"--build-arg={name}={value}" for name, value in build_args.items()]
    args += ["--file", str(dockerfile), "--tag", tag, str(REPO_ROOT)]
    log_path = settings.images_state_dir / "logs" / f"build-{tag.replace('/', '_')}.log"
    log_path.unlink(missing_ok=True)
    started = time.monotonic()
    podman.run(args, log_path=log_path)
    seconds = time.monotonic() - started
    size = podman.inspect("image", tag)["Size"]
    log.info("built %s in %.0f s (%.0f MB)", tag, seconds, size / 1e6)
    return seconds


class ImageBuilder:
    """Builds the project's images and the stand-ins, the bases obtained once per instance."""

    def __init__(self, settings: ContainerSettings) -> None:
        self.settings = settings
        find_or_install_tools(settings, settings.images_state_dir / "logs")
        self.podman = Podman(settings)
        self._bases: dict[str, str] = {}
        self._debian: str | None = None

    def debian_base(self) -> str:
        if self._debian is None:
            self._debian = debian_base(self.podman, self.settings)
            check_containers_run(self.podman, self._debian)
        return self._debian

    def base(self, pinned: str) -> str:
        """`pinned` where podman has it or can pull it, else the Debian base (said why)."""
        if pinned not in self._bases:
            reason = obtain(self.podman, pinned)
            if reason is None:
                check_containers_run(self.podman, pinned)
                self._bases[pinned] = pinned
            else:
                log.warning(
                    "the pinned base %s cannot be pulled (%s): building on Debian %s's packages",
                    pinned,
                    reason,
                    self.settings.images_debian_suite,
                )
                self._bases[pinned] = self.debian_base()
        return self._bases[pinned]

    def build_project_image(self, image: ImageBuild) -> float:
        """Build one of compose's images; seconds taken."""
        build_args: dict[str, str] = {}
        mounts: dict[Path, str] = {}
        pinned = dockerfile_arg(image.dockerfile, BASE_ARG)
        if pinned:
            build_args[BASE_ARG] = self.base(pinned)
        if dockerfile_arg(image.dockerfile, TORCH_WHEELS_ARG) is not None:
            wheels = torch_wheels_dir(self.settings)
            if wheels is not None:
                build_args[TORCH_WHEELS_ARG] = TORCH_WHEELS_MOUNT
                mounts[wheels] = TORCH_WHEELS_MOUNT
        return build(self.podman, self.settings, image.dockerfile, image.tag, build_args, mounts)

    def build_project_images(self, names: list[str] | None = None) -> dict[str, float]:
        """Build compose's images (those named, by default all); tag -> seconds."""
        images = [i for i in project_images() if names is None or i.name in names]
        return {image.tag: self.build_project_image(image) for image in images}

    def pulled_image(self, service: str, image: str) -> str:
        """The image to run for a compose service that pulls `image`: itself when podman has it
        or can pull it, else its stand-in from Debian's packages (built here). Raises
        ContainersUnavailableError naming why when there is neither."""
        reason = obtain(self.podman, image)
        if reason is None:
            return image
        standin = STANDIN_DIR / f"Dockerfile.{service}"
        if not standin.is_file():
            raise ContainersUnavailableError(f"{image} cannot be pulled ({reason}); no stand-in")
        base = self.debian_base()
        tag = f"localhost/prerank-standin-{service}:{base.rpartition(':')[2]}"
        log.warning(
            "%s cannot be pulled (%s): using %s, built from %s", image, reason, tag, standin
        )
        build(self.podman, self.settings, standin, tag, {STANDIN_BASE_ARG: base}, {})
        return tag


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m docker.images", description=__doc__)
    names = [image.name for image in project_images()]
    cli.add_argument("--only", choices=names, action="append", help="build only this image")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = load_settings(ContainerSettings)
    configure_logging(logging.INFO)
    try:
        built = ImageBuilder(settings).build_project_images(args.only)
    except ContainersUnavailableError as exc:
        log.error("containers cannot run here: %s", exc)
        return 2
    except PodmanError as exc:
        log.error("%s", exc)
        return 1
    for tag, seconds in built.items():
        print(f"{tag}  built in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
