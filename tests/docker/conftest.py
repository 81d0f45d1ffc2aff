"""Fixtures of the container tests: podman (installed from Debian's packages when missing; a test
is skipped, with the reason, only where containers cannot run) and the project's images, built
once per session on podman's layer cache, as `make images` builds them: in the background from the
end of collection on (tests/docker/prebuild.py), the tests that need them run last."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from docker.images import ImageBuilder, compose_services
from docker.podman import ContainersUnavailableError, Podman
from docker.settings import ContainerSettings
from research.service_process import free_port
from tests.docker.prebuild import IMAGE_FIXTURE, Prebuild

# A cold build (a Debian base from mmdebstrap, then every pip install) takes minutes on 2 cores;
# the test that first needs the images waits for it.
BUILD_TIMEOUT_SECONDS = 1800
REDIS_START_SECONDS = 30.0
POLL_SECONDS = 0.2
PREBUILD = pytest.StashKey[Prebuild]()


def needs_images(item: pytest.Item) -> bool:
    return IMAGE_FIXTURE in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that need the images last (the others keep their order): the background build
    gets the rest of the suite's time to get ahead."""
    items.sort(key=needs_images)


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.option.collectonly and any(map(needs_images, session.items)):
        prebuild = Prebuild.start()
        if prebuild is not None:
            session.config.stash[PREBUILD] = prebuild


def pytest_sessionfinish(session: pytest.Session) -> None:
    prebuild = session.config.stash.get(PREBUILD, None)
    if prebuild is not None:
        prebuild.stop()


def unique_name(what: str) -> str:
    """A container, network or project name of this test session's own."""
    return f"prerank-test-{uuid.uuid4().hex[:8]}-{what}"


@pytest.fixture(scope="session")
def prebuilt(request: pytest.FixtureRequest) -> dict[str, float] | None:
    """Once the background build is over: what it built (tag -> build seconds), or None where it
    failed or did not run."""
    prebuild = request.config.stash.get(PREBUILD, None)
    return None if prebuild is None else prebuild.result(BUILD_TIMEOUT_SECONDS)


@pytest.fixture(scope="session")
def image_builder(
    tmp_path_factory: pytest.TempPathFactory, prebuilt: dict[str, float] | None
) -> ImageBuilder:
    """The builder of `make images`, its logs in a temp dir; skips where podman cannot be had.
    Not before the background build is over: podman and apt-get are not run twice at once."""
    settings = ContainerSettings(images_state_dir=tmp_path_factory.mktemp("images"))
    try:
        return ImageBuilder(settings)
    except ContainersUnavailableError as exc:
        pytest.skip(f"containers cannot run here: {exc}")


@pytest.fixture(scope="session")
def podman(image_builder: ImageBuilder) -> Podman:
    return image_builder.podman


@pytest.fixture(scope="session")
def built_images(
    image_builder: ImageBuilder, prebuilt: dict[str, float] | None
) -> dict[str, float]:
    """compose's images (service, offline) built once: tag -> build seconds (here where the
    background build failed, to fail or skip with the reason)."""
    try:
        built = prebuilt or image_builder.build_project_images()
    except ContainersUnavailableError as exc:
        pytest.skip(f"containers cannot run here: {exc}")
    print("image builds (s):", {tag: round(seconds) for tag, seconds in built.items()})
    return built


@dataclass(frozen=True)
class RedisBeside:
    """A Redis container on a network of the test's own: its name there, a client from here."""

    network: str
    container: str
    client: redis.Redis

    @property
    def url_inside(self) -> str:
        """Where the other containers of the network find it."""
        return f"redis://{self.container}:6379/0"


@pytest.fixture(scope="module")
def redis_beside(image_builder: ImageBuilder, podman: Podman) -> Iterator[RedisBeside]:
    """compose's Redis image (or its Debian stand-in) on a fresh bridge network, its port
    published on loopback for the test."""
    try:
        image = image_builder.pulled_image("redis", compose_services()["redis"]["image"])
    except ContainersUnavailableError as exc:
        pytest.skip(f"containers cannot run here: {exc}")
    network, container, port = unique_name("net"), unique_name("redis"), free_port()
    podman.run(["network", "create", network])
    try:
        podman.run(
            [
                *("run", "--detach", "--name", container, "--network", network),
                *("--publish", f"127.0.0.1:{port}:6379", image),
                *("redis-server", "--save", "", "--appendonly", "no"),
            ]
        )
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + REDIS_START_SECONDS
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(POLL_SECONDS)
        yield RedisBeside(network, container, client)
        client.close()
    finally:
        podman.run(["rm", "--force", container], check=False)
        podman.run(["network", "rm", "--force", network], check=False)
