"""The images built and run for real with podman: the service image serves a version published
to a Redis container beside it, as a non-root user on a read-only root filesystem, its health
check passing; the offline image runs the main job against that Redis with a CPU-only torch."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docker.images import (
    BASE_ARG,
    TORCH_WHEELS_ARG,
    dockerfile_arg,
    project_images,
    qualified,
    torch_version,
    torch_wheels_dir,
)
from docker.podman import Podman
from docker.settings import ContainerSettings
from offline_jobs.data.dataset import InteractionData
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_store import active_version
from research.service_process import free_port
from tests.conftest import (
    SERVICE_TEST_ENV,
    Bundle,
    delete_prefix,
    job_env,
    publish_test_bundle,
    tiny_settings,
)
from tests.docker.conftest import BUILD_TIMEOUT_SECONDS, RedisBeside, unique_name

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_SECONDS)

IMAGES = {image.name: image.tag for image in project_images()}
SERVICE_PORT = 8000  # the service image's PRERANK_PORT
CACHE_DIR = "/app/cache"  # the service image's bundle cache, a volume
NON_ROOT_UID = 10001  # the Dockerfiles' `useradd --uid`
READY_SECONDS = 120.0  # the image's health check start period
POLL_SECONDS = 1.0
CANDIDATES = 50
# The offline image carries torch, the training stack and the load tools; a CUDA torch would take
# it to several GB.
MAX_OFFLINE_IMAGE_BYTES = 3 * 1024**3
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "API_KEY", "REDIS_URL")


def test_image_names_get_the_registry_docker_assumes() -> None:
    assert qualified("redis:7.2.4-bookworm") == "docker.io/library/redis:7.2.4-bookworm"
    assert qualified("prom/prometheus:v2.53.0") == "docker.io/prom/prometheus:v2.53.0"
    assert qualified("localhost/prerank-service:local") == "localhost/prerank-service:local"
    assert qualified("quay.io/prometheus/prometheus:v2.53.0") == (
        "quay.io/prometheus/prometheus:v2.53.0"
    )


def test_both_images_build_on_the_pinned_base_and_only_the_offline_one_takes_torch() -> None:
    images = {image.name: image for image in project_images()}
    assert set(images) == {"service", "offline"}
    for image in images.values():
        assert image.dockerfile.is_file()
        assert dockerfile_arg(image.dockerfile, BASE_ARG) == "python:3.11.7-slim-bookworm"
    assert dockerfile_arg(images["offline"].dockerfile, TORCH_WHEELS_ARG) == ""
    assert dockerfile_arg(images["service"].dockerfile, TORCH_WHEELS_ARG) is None


def test_the_offline_build_takes_torch_only_from_a_folder_with_its_cpu_wheel(
    tmp_path: Path,
) -> None:
    cpu, cuda = tmp_path / "cpu", tmp_path / "cuda"
    cpu.mkdir()
    cuda.mkdir()
    (cpu / f"torch-{torch_version()}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    (cuda / f"torch-{torch_version()}-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert torch_wheels_dir(ContainerSettings(images_torch_wheels_dir=cpu)) == cpu
    with pytest.raises(ValueError, match="PRERANK_IMAGES_TORCH_WHEELS_DIR"):
        torch_wheels_dir(ContainerSettings(images_torch_wheels_dir=cuda))


@pytest.fixture
def keys(redis_beside: RedisBeside) -> Iterator[RedisKeys]:
    keys = RedisKeys(f"image-test-{uuid.uuid4().hex[:8]}:")
    yield keys
    delete_prefix(redis_beside.client, keys.prefix)


def env_args(env: dict[str, str]) -> list[str]:
    return [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]


def wait_healthy(podman: Podman, container: str) -> str:
    """Run the image's HEALTHCHECK until it passes (or the start period is over)."""
    deadline = time.monotonic() + READY_SECONDS
    while (status := podman.health(container)) != "healthy" and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    return status


def wait_for_version(url: str, version: str) -> dict:
    deadline = time.monotonic() + READY_SECONDS
    while True:
        ready = httpx.get(f"{url}/readyz", timeout=5).json()
        if ready.get("version") == version or time.monotonic() > deadline:
            return ready
        time.sleep(POLL_SECONDS)


@pytest.fixture
def service_container(
    podman: Podman, built_images: dict[str, float], redis_beside: RedisBeside, keys: RedisKeys
) -> Iterator[tuple[str, str]]:
    """The service image beside Redis, as compose runs it: read-only root, /tmp a tmpfs, the
    bundle cache on a volume of its own; (container name, URL of its published port)."""
    container, volume, port = unique_name("service"), unique_name("cache"), free_port()
    env = {
        "PRERANK_REDIS_URL": redis_beside.url_inside,
        "PRERANK_REDIS_KEY_PREFIX": keys.prefix,
        "PRERANK_BUNDLE_CACHE_DIR": CACHE_DIR,
        "PRERANK_POLL_INTERVAL_SECONDS": "1",
        **SERVICE_TEST_ENV,
    }
    podman.run(
        [
            *("run", "--detach", "--name", container, "--network", redis_beside.network),
            *("--read-only", "--tmpfs", "/tmp", "--volume", f"{volume}:{CACHE_DIR}"),
            *("--publish", f"127.0.0.1:{port}:{SERVICE_PORT}", *env_args(env)),
            IMAGES["service"],
        ]
    )
    try:
        yield container, f"http://127.0.0.1:{port}"
    finally:
        podman.run(["rm", "--force", container], check=False)
        podman.run(["volume", "rm", "--force", volume], check=False)


def test_the_service_image_serves_a_published_version_as_non_root_on_a_read_only_root(
    podman: Podman,
    service_container: tuple[str, str],
    redis_beside: RedisBeside,
    keys: RedisKeys,
    fit_bundle: Bundle,
    tiny_data: InteractionData,
) -> None:
    container, url = service_container
    assert wait_healthy(podman, container) == "healthy"
    publish_test_bundle(redis_beside.client, keys, fit_bundle.path, users=tiny_data)
    version = fit_bundle.manifest.version
    assert wait_for_version(url, version)["version"] == version

    candidates = tiny_data.catalogue[:CANDIDATES].tolist()
    body = {"user_id": int(tiny_data.user_ids[0]), "candidates": candidates}
    answer = httpx.post(f"{url}/prerank", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    assert sorted(item["item_id"] for item in answer.json()["items"]) == sorted(candidates)

    status = podman.run(["exec", container, "cat", "/proc/1/status"]).stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert set(map(int, uids)) == {NON_ROOT_UID}  # real, effective, saved and fs uid of PID 1
    assert podman.inspect("container", container)["HostConfig"]["ReadonlyRootfs"] is True
    written = podman.run(["exec", container, "touch", "/app/probe"], check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr
    assert version in podman.run(["exec", container, "ls", CACHE_DIR]).stdout  # its volume


def test_the_service_image_keeps_its_health_check_and_bakes_in_no_secret(
    podman: Podman, built_images: dict[str, float]
) -> None:
    image = podman.inspect("image", IMAGES["service"])
    assert "/healthz" in " ".join(image["Healthcheck"]["Test"])  # the docker format keeps it
    config = image["Config"]
    assert config["User"] not in {"", "root", "0"}
    names = [variable.split("=", 1)[0] for variable in config["Env"]]
    assert [n for n in names if any(word in n for word in SECRET_WORDS)] == []


def test_the_offline_image_runs_the_main_job_against_that_redis_with_a_cpu_torch(
    podman: Podman,
    built_images: dict[str, float],
    redis_beside: RedisBeside,
    keys: RedisKeys,
) -> None:
    settings = tiny_settings(Path("/app/artifacts"), keys.prefix).model_copy(
        update={"redis_url": redis_beside.url_inside, "models": ("fit",)}
    )
    env = {k: v for k, v in job_env(settings).items() if k.startswith("PRERANK_")}
    command = ["python", "-m", "offline_jobs", "run", "--quiet"]  # docker-compose.yml's
    job = podman.run(
        [
            *("run", "--rm", "--network", redis_beside.network, *env_args(env)),
            *(IMAGES["offline"], *command),
        ],
        check=False,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    version = active_version(redis_beside.client, keys)
    assert version is not None and version.startswith("fit-")

    which = "import torch; print(torch.__version__, torch.version.cuda)"
    torch = podman.run(["run", "--rm", IMAGES["offline"], "python", "-c", which])
    assert torch.stdout.split() == [f"{torch_version()}+cpu", "None"]  # the pin, CPU only
    size = podman.inspect("image", IMAGES["offline"])["Size"]
    print(
        f"offline image {size / 1e6:.0f} MB, service image "
        f"{podman.inspect('image', IMAGES['service'])['Size'] / 1e6:.0f} MB"
    )
    assert size < MAX_OFFLINE_IMAGE_BYTES
