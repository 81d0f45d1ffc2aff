"""docker-compose.yml brought up for real by podman-compose (`docker.compose.PodmanStack`): Redis,
the offline job (on the suite's tiny world), two service replicas and Prometheus; requests through
both replicas are counted by the stack's own Prometheus; then the stack comes down. Images that
cannot be had here are left out with the reason printed, and the stack comes up without them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml

from docker.compose import (
    COMPLETED,
    PROJECT_LABEL,
    PodmanStack,
    depends_on,
    grace_seconds,
    left_out_with_dependents,
    podman_compose_config,
    start_order,
)
from docker.images import COMPOSE_FILE, ImageBuilder
from docker.podman import Podman
from offline_jobs.data.dataset import InteractionData
from research.service_process import free_port
from tests.conftest import SERVICE_TEST_ENV, TINY_MODEL, TINY_TRAIN, TINY_WORLD
from tests.docker.conftest import BUILD_TIMEOUT_SECONDS, unique_name

REPLICAS = {"service-1": 8000, "service-2": 8001}  # compose service -> its PRERANK_PORT
PROMETHEUS_PORT = 9090
REQUESTS_PER_REPLICA = 20
CANDIDATES = 50
PROMETHEUS_WAIT_SECONDS = 60.0  # a few of prometheus.yml's 5 s scrape intervals
POLL_SECONDS = 1.0
COUNT_QUERY = "sum by (instance) (prerank_request_seconds_count)"
TINY_JOB = {  # the offline job of the test suite's tiny world, FIT only
    "PRERANK_MODELS": '["fit"]',
    "PRERANK_SYNTHETIC": TINY_WORLD.model_dump_json(),
    "PRERANK_MODEL": TINY_MODEL.model_dump_json(),
    "PRERANK_TRAIN": TINY_TRAIN.model_dump_json(),
    "PRERANK_PARITY_USERS": "16",
    **SERVICE_TEST_ENV,
}
CORE = {"redis", "offline", *REPLICAS, "prometheus"}  # what must come up here


def test_services_start_after_each_service_they_wait_on() -> None:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    order = start_order(services)
    assert sorted(order) == sorted(services)
    for name, service in services.items():
        for dependency in depends_on(service):
            assert order.index(dependency) < order.index(name), (dependency, name)
    assert depends_on(services["service-1"])["offline"] == COMPLETED
    assert grace_seconds(services["service-1"]) > grace_seconds(services["redis"])


def test_the_generated_file_runs_the_given_images_on_bound_ports_without_what_is_left_out() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    left_out = left_out_with_dependents(compose["services"], {"prometheus": "cannot be pulled"})
    assert set(left_out) == {"prometheus", "grafana"}  # Grafana reads Prometheus
    assert "prometheus" in left_out["grafana"]
    images = {name: f"localhost/{name}:test" for name in compose["services"]}
    config = podman_compose_config(
        compose,
        images,
        left_out,
        "127.0.0.1",
        {"offline": {"PRERANK_MODELS": '["fit"]'}},
        {"service-1": 18000},
    )
    services = config["services"]
    assert set(services) == set(compose["services"]) - set(left_out)
    assert {name: s["image"] for name, s in services.items()} == {n: images[n] for n in services}
    assert all("build" not in service for service in services.values())
    assert services["service-1"]["ports"] == ["127.0.0.1:18000:8000"]
    assert services["service-2"]["ports"] == ["127.0.0.1:8001:8001"]  # compose's host port
    offline_env = services["offline"]["environment"]
    assert offline_env["PRERANK_MODELS"] == '["fit"]'
    assert (
        offline_env["PRERANK_REDIS_URL"]
        == compose["services"]["offline"]["environment"]["PRERANK_REDIS_URL"]
    )
    full = podman_compose_config(compose, images, {}, "127.0.0.1", {}, {})
    for mount in full["services"]["prometheus"]["volumes"]:
        assert Path(mount.split(":")[0]).is_absolute() and Path(mount.split(":")[0]).exists()


def request_counts(prometheus_url: str) -> dict[str, float]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": COUNT_QUERY})
    response.raise_for_status()
    rows = response.json()["data"]["result"]
    return {row["metric"]["instance"]: float(row["value"][1]) for row in rows}


@pytest.mark.timeout(BUILD_TIMEOUT_SECONDS)
def test_the_compose_stack_runs_under_podman_and_prometheus_counts_both_replicas(
    image_builder: ImageBuilder,
    podman: Podman,
    built_images: dict[str, float],
    tiny_data: InteractionData,
) -> None:
    project = unique_name("stack")
    env = {"offline": TINY_JOB, **dict.fromkeys(REPLICAS, SERVICE_TEST_ENV)}
    published = {name: free_port() for name in [*REPLICAS, "prometheus", "locust"]}
    stack = PodmanStack(image_builder.settings, project=project, env=env, host_ports=published)
    body = {"user_id": int(tiny_data.user_ids[0]), "candidates": tiny_data.catalogue[:CANDIDATES]}
    body["candidates"] = body["candidates"].tolist()
    started = time.monotonic()
    with stack:
        up_seconds = time.monotonic() - started
        for name, reason in stack.left_out.items():
            print(f"left out of the stack: {name}: {reason}")
        assert set(stack.services) >= CORE
        assert CORE.isdisjoint(stack.left_out)
        for name, port in REPLICAS.items():
            url = stack.published_url(name, port)
            with httpx.Client(base_url=url, timeout=30) as client:
                version = client.get("/readyz").json()["version"]
                assert version is not None and version.startswith("fit-")  # the job's
                answers = [client.post("/prerank", json=body) for _ in range(REQUESTS_PER_REPLICA)]
            assert [a.status_code for a in answers] == [200] * REQUESTS_PER_REPLICA
            assert {a.json()["model_version"] for a in answers} == {version}

        prometheus = stack.published_url("prometheus", PROMETHEUS_PORT)
        instances = {f"{name}:{port}" for name, port in REPLICAS.items()}  # prometheus.yml's
        deadline = time.monotonic() + PROMETHEUS_WAIT_SECONDS
        while (counts := request_counts(prometheus)) != dict.fromkeys(
            instances, float(REQUESTS_PER_REPLICA)
        ) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        print(f"stack up in {up_seconds:.0f} s; Prometheus counted {counts}")
        assert counts == dict.fromkeys(instances, float(REQUESTS_PER_REPLICA))
    assert podman.containers({PROJECT_LABEL: project}) == []
    leftovers = ["network", "volume"]
    filters = ["--filter", f"label={PROJECT_LABEL}={project}", "--format", "{{.Name}}"]
    assert [podman.run([kind, "ls", *filters]).stdout.split() for kind in leftovers] == [[], []]
