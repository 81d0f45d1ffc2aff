"""docker-compose.yml and the Dockerfiles, checked without a container engine: what they name
(Dockerfiles, modules, files, settings, ports, services) exists, and the images are built and run
the way we deploy (pinned bases, non-root, a health check on the service, a CPU-only torch, the
replicas on a read-only root). tests/docker/test_images.py and test_podman_stack.py build and run
them for real with podman."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from loadtest.settings import LoadSettings, StackSettings
from offline_jobs.events.settings import EventSettings
from offline_jobs.settings import JobSettings
from prerank_contract.settings import ENV_PREFIX
from service.settings import ServiceSettings
from tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO_ROOT / "docker" / "prometheus" / "prometheus.yml"
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    ServiceSettings,
    JobSettings,
    EventSettings,
    LoadSettings,
    StackSettings,
)
SERVICE_DOCKERFILE = "docker/Dockerfile.service"
DOCKERFILES = sorted(p.relative_to(REPO_ROOT) for p in (REPO_ROOT / "docker").glob("Dockerfile.*"))
DOCKERFILES = [p for p in DOCKERFILES if p.suffix != ".dockerignore"]
VERSION_TAG = re.compile(r":[^:/]*\d+\.\d+")  # a tag naming at least major.minor
ROOT_USERS = {"root", "0", "0:0"}


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def replicas() -> dict[str, dict[str, Any]]:
    """Compose services running the pre-ranking service image."""
    return {
        name: service
        for name, service in services().items()
        if service.get("build", {}).get("dockerfile") == SERVICE_DOCKERFILE
    }


def env_names(model: type[BaseModel], prefix: str) -> set[str]:
    """Every env name a settings class reads: `PREFIX_FIELD` and nested `PREFIX_FIELD__SUB`."""
    names = set()
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name.upper()}"
        names.add(name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            names |= env_names(field.annotation, f"{name}__")
    return names


def valid_env_names() -> set[str]:
    return set().union(*(env_names(cls, ENV_PREFIX) for cls in SETTINGS_CLASSES))


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip()))
    return instructions


def base_images(instructions: list[Instruction]) -> list[str]:
    """The image of each FROM that is not an earlier stage, global ARG defaults substituted."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images = []
    for instruction in instructions:
        if instruction.keyword == "ARG" and not stages and "=" in instruction.arguments:
            name, value = instruction.arguments.split("=", 1)
            args[name] = value
        elif instruction.keyword == "FROM":
            words = instruction.arguments.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            if image not in stages:
                images.append(image)
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    return images


def dockerignore_allows(dockerfile: Path, source: str) -> bool:
    """Whether the Dockerfile's own .dockerignore (BuildKit) sends `source` to the build."""
    ignore = REPO_ROOT / f"{dockerfile}.dockerignore"
    allowed = True
    for line in ignore.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(source.rstrip("/"), pattern.lstrip("!").rstrip("/")):
            allowed = negated
    return allowed


def python_module_exists(module: str) -> bool:
    """`python -m module` would run something: a module, or a package with __main__."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return False
    if spec.submodule_search_locations is None:
        return True
    return importlib.util.find_spec(f"{module}.__main__") is not None


def command_problems(command: list[str]) -> list[str]:
    if command[:2] == ["python", "-m"] and not python_module_exists(command[2]):
        return [f"no module {command[2]}"]
    if command[0] == "locust":
        locustfile = command[command.index("-f") + 1]
        if not (REPO_ROOT / locustfile).is_file():
            return [f"no locustfile {locustfile}"]
    return []


def test_every_build_names_an_existing_dockerfile() -> None:
    builds = {name: s["build"] for name, s in services().items() if "build" in s}
    assert {b["dockerfile"] for b in builds.values()} == {str(p) for p in DOCKERFILES}
    for name, build in builds.items():
        assert (REPO_ROOT / build["context"] / build["dockerfile"]).is_file(), name


def test_every_command_runs_something_that_exists() -> None:
    commands = {name: s["command"] for name, s in services().items() if "command" in s}
    for path in DOCKERFILES:
        for instruction in dockerfile_instructions(REPO_ROOT / path):
            if instruction.keyword == "CMD":
                commands[str(path)] = json.loads(instruction.arguments)
    assert any(c[:2] == ["python", "-m"] for c in commands.values())
    assert any(c[0] == "locust" for c in commands.values())
    problems = {name: p for name, c in commands.items() if (p := command_problems(c))}
    assert problems == {}


def test_the_offline_command_parses_with_the_jobs_cli() -> None:
    from offline_jobs.__main__ import parser

    command = services()["offline"]["command"]
    assert command[:3] == ["python", "-m", "offline_jobs"]
    assert parser().parse_args(command[3:]).command == "run"


def test_every_mounted_host_path_exists_and_every_volume_is_declared() -> None:
    compose = load_compose()
    declared = set(compose.get("volumes", {}))
    missing_paths, undeclared = [], []
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith((".", "/")):
                if not (REPO_ROOT / source).exists():
                    missing_paths.append(f"{name}: {source}")
            elif source not in declared:
                undeclared.append(f"{name}: {source}")
    assert missing_paths == []
    assert undeclared == []


def test_every_prerank_env_name_is_a_setting() -> None:
    valid = valid_env_names()
    unknown = {
        f"{name}: {key}"
        for name, service in services().items()
        for key in environment(service)
        if key.startswith(ENV_PREFIX) and key not in valid
    }
    assert unknown == set()


def test_every_dependency_is_a_service_and_redis_is_the_one_the_services_use() -> None:
    names = set(services())
    for name, service in services().items():
        assert set(service.get("depends_on", [])) <= names, name
        url = environment(service).get(f"{ENV_PREFIX}REDIS_URL")
        if url is not None:
            host = urlsplit(url).hostname
            assert host in names, f"{name}: {url}"
            assert "healthcheck" in services()[host], f"{host} has no health check to wait on"


def test_two_replicas_listen_where_compose_publishes_them() -> None:
    found = replicas()
    assert len(found) == 2
    ports = set()
    for name, service in found.items():
        env = environment(service)
        port = env[f"{ENV_PREFIX}PORT"]
        assert env[f"{ENV_PREFIX}HOST"] == "0.0.0.0", name
        assert [p.split(":")[-1] for p in service["ports"]] == [port], name
        assert service["depends_on"]["offline"]["condition"] == "service_completed_successfully"
        ports.add(port)
    assert len(ports) == 2


def test_prometheus_scrapes_each_replica_by_its_compose_name_and_port() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {t for group in jobs["prerank"]["static_configs"] for t in group["targets"]}
    expected = {
        f"{name}:{environment(service)[f'{ENV_PREFIX}PORT']}"
        for name, service in replicas().items()
    }
    assert targets == expected
    mounts = services()["prometheus"]["volumes"]
    assert "./docker/prometheus:/etc/prometheus:ro" in mounts
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_CONFIG.parent / rule_file).is_file(), rule_file


def test_every_pulled_image_is_pinned() -> None:
    for name, service in services().items():
        if "build" not in service:
            image = service["image"]
            assert VERSION_TAG.search(image) and not image.endswith(":latest"), f"{name}: {image}"


def test_the_service_image_is_multi_stage() -> None:
    """Its runtime stage takes the builder's venv and nothing else of it. (The offline image is
    one stage: docker/Dockerfile.offline says why.)"""
    instructions = dockerfile_instructions(REPO_ROOT / SERVICE_DOCKERFILE)
    assert [i.keyword for i in instructions].count("FROM") >= 2
    assert any(i.keyword == "COPY" and "--from=builder" in i.arguments for i in instructions)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=str)
def test_dockerfile_is_pinned_and_non_root(dockerfile: Path) -> None:
    instructions = dockerfile_instructions(REPO_ROOT / dockerfile)
    keywords = [i.keyword for i in instructions]
    for image in base_images(instructions):
        assert VERSION_TAG.search(image) and not image.endswith(":latest"), image
    users = [i.arguments for i in instructions if i.keyword == "USER"]
    assert users and users[-1] not in ROOT_USERS
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "FROM")
    runs = [i.arguments for i in instructions if i.keyword == "RUN"]
    installed = [name for run in runs for name in re.findall(r"-r /tmp/(\S+)", run)]
    assert installed, "no requirements file installed"
    if any("torch" in requirement_names(REPO_ROOT / name) for name in installed):
        assert_torch_is_cpu_only(instructions)


def assert_torch_is_cpu_only(instructions: list[Instruction]) -> None:
    """torch only from a CPU source, alone, and checked after the install: PyPI's Linux wheel
    pulls GBs of CUDA packages."""
    args = {
        name: value
        for i in instructions
        if i.keyword == "ARG"
        for name, _, value in [i.arguments.partition("=")]
    }
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    (install,) = [
        i.arguments for i in instructions if i.keyword == "RUN" and "torch==" in i.arguments
    ]
    pip_installs = [p for p in install.split("pip install")[1:] if "$torch" in p]
    assert len(pip_installs) == 2  # a local folder of CPU wheels, else the CPU index
    for pip_install in pip_installs:
        assert "--no-deps" in pip_install
        assert '--index-url "$TORCH_INDEX_URL"' in pip_install or (
            '--no-index --find-links "$TORCH_WHEELS"' in pip_install
        )
    assert "torch.version.cuda" in install  # the build fails on a CUDA torch


def requirement_names(path: Path) -> set[str]:
    """Package names a requirements file asks for, following its `-r` includes."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= requirement_names(path.parent / line[3:].strip())
        elif line:
            names.add(re.split(r"[=<>\[ ;]", line, maxsplit=1)[0].lower())
    return names


def test_the_service_image_installs_no_torch() -> None:
    """The service imports no torch (ARCHITECTURE.md); its image must not carry it either."""
    runs = [
        i.arguments
        for i in dockerfile_instructions(REPO_ROOT / "docker/Dockerfile.service")
        if i.keyword == "RUN"
    ]
    installed = [name for run in runs for name in re.findall(r"-r /tmp/(\S+)", run)]
    assert installed and all("torch" not in requirement_names(REPO_ROOT / n) for n in installed)
    assert not any("torch" in run for run in runs)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=str)
def test_dockerfile_copies_sources_that_exist_and_reach_the_build(dockerfile: Path) -> None:
    sources = []
    for instruction in dockerfile_instructions(REPO_ROOT / dockerfile):
        words = instruction.arguments.split()
        if instruction.keyword == "COPY" and not words[0].startswith("--from"):
            sources += words[:-1]
    assert sources
    assert [s for s in sources if not (REPO_ROOT / s).exists()] == []
    assert [s for s in sources if not dockerignore_allows(dockerfile, s)] == []
    assert not dockerignore_allows(dockerfile, ".venv")
    assert not dockerignore_allows(dockerfile, "artifacts")


def test_service_image_checks_health_on_its_own_port_and_exposes_it() -> None:
    instructions = dockerfile_instructions(REPO_ROOT / SERVICE_DOCKERFILE)
    (healthcheck,) = [i.arguments for i in instructions if i.keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "PRERANK_PORT" in healthcheck
    env = " ".join(i.arguments for i in instructions if i.keyword == "ENV")
    port = re.search(rf"{ENV_PREFIX}PORT=(\d+)", env)
    assert port is not None
    assert port.group(1) in [i.arguments for i in instructions if i.keyword == "EXPOSE"]
    assert f"{ENV_PREFIX}HOST=0.0.0.0" in env


def test_replicas_get_the_time_their_shutdown_drain_takes() -> None:
    fields = ServiceSettings.model_fields
    needed = fields["shutdown_drain_seconds"].default + fields["shutdown_timeout_seconds"].default
    for name, service in replicas().items():
        grace = re.fullmatch(r"(\d+)s", service["stop_grace_period"])
        assert grace is not None and int(grace.group(1)) > needed, name


def test_replicas_run_on_a_read_only_root_with_tmp_and_their_cache_writable() -> None:
    for name, service in replicas().items():
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        cache_dir = environment(service)[f"{ENV_PREFIX}BUNDLE_CACHE_DIR"]
        targets = {mount.split(":")[1]: mount for mount in service["volumes"]}
        assert not targets[cache_dir].endswith(":ro"), name
        assert targets[cache_dir].split(":")[0] in load_compose()["volumes"], name


STANDINS = sorted((REPO_ROOT / "docker" / "standins").glob("Dockerfile.*"))


@pytest.mark.parametrize("standin", STANDINS, ids=lambda p: p.name)
def test_every_standin_replaces_a_pulled_image_and_runs_as_non_root(standin: Path) -> None:
    """docker.images builds docker/standins/Dockerfile.<service> for a compose service whose
    pinned image cannot be pulled."""
    service = services()[standin.name.split(".", 1)[1]]
    assert "build" not in service and "image" in service
    instructions = dockerfile_instructions(standin)
    users = [i.arguments for i in instructions if i.keyword == "USER"]
    assert users and users[-1] not in ROOT_USERS
    assert [i.arguments for i in instructions if i.keyword == "FROM"] == ["${BASE_IMAGE}"]
