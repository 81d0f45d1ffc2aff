"""``python -m docker.compose up|down|ps`` (``make podman-up``, ``make podman-down``):
docker-compose.yml run by podman-compose on this kind of machine.

podman-compose reads a copy of the compose file generated under the state directory: the images
`docker.images` built; for each pulled image that cannot be pulled, its stand-in from Debian's
packages (Redis, Prometheus), or, with none, the service left out with the reason printed
(Grafana here), and any service that depends on it; the published ports bound to one address.
podman-compose creates the network, the volumes and the containers. The start order is then
driven here by compose's `depends_on` conditions, which podman-compose 1.0.3 ignores and which
podman without systemd cannot observe (it runs no health check on its own): a service starts once
each dependency it waits on is started, healthy (its health check run here until it passes) or
exited 0."""

from __future__ import annotations

import argparse
import graphlib
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any, NoReturn

import yaml

from docker.images import COMPOSE_FILE, ImageBuilder
from docker.podman import ContainersUnavailableError, PodmanError
from docker.settings import REPO_ROOT, ContainerSettings
from prerank_contract.settings import configure_logging, load_settings

log = logging.getLogger("docker.compose")

PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
STARTED, HEALTHY, COMPLETED = (
    "service_started",
    "service_healthy",
    "service_completed_successfully",
)
DEFAULT_GRACE_SECONDS = 10  # Docker's stop timeout where compose sets no stop_grace_period
LOG_TAIL_LINES = "40"  # of a container that failed to start, quoted in the error


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """dependency -> condition (the list form means `service_started`)."""
    found = service.get("depends_on", {})
    if isinstance(found, list):
        return dict.fromkeys(found, STARTED)
    return {name: spec.get("condition", STARTED) for name, spec in found.items()}


def start_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Services, each after every one it depends on."""
    graph = {name: set(depends_on(service)) for name, service in services.items()}
    return list(graphlib.TopologicalSorter(graph).static_order())


def left_out_with_dependents(
    services: Mapping[str, Mapping[str, Any]], left_out: Mapping[str, str]
) -> dict[str, str]:
    """`left_out` and every service that depends on one of them, each with its reason."""
    reasons = dict(left_out)
    for name in start_order(services):
        missing = sorted(set(depends_on(services[name])) & set(reasons))
        if name not in reasons and missing:
            reasons[name] = f"depends on {', '.join(missing)}, left out"
    return reasons


def absolute_mount(mount: str) -> str:
    """A bind mount's relative host path made absolute (the generated file lives elsewhere)."""
    source, _, rest = mount.partition(":")
    if source.startswith("."):
        source = str((REPO_ROOT / source).resolve())
    return f"{source}:{rest}" if rest else source


def published_port(spec: str, bind_host: str, host_port: int | None) -> str:
    """`HOST:CONTAINER` bound to `bind_host`, the host side replaced by `host_port` if given."""
    *host, container = str(spec).split(":")
    return f"{bind_host}:{host_port if host_port is not None else host[-1]}:{container}"


def grace_seconds(service: Mapping[str, Any]) -> int:
    found = re.fullmatch(r"(\d+)s", str(service.get("stop_grace_period", "")))
    return int(found.group(1)) if found else DEFAULT_GRACE_SECONDS


def podman_compose_config(
    compose: dict[str, Any],
    images: Mapping[str, str],
    left_out: Mapping[str, str],
    bind_host: str,
    env: Mapping[str, Mapping[str, str]],
    host_ports: Mapping[str, int],
) -> dict[str, Any]:
    """docker-compose.yml for podman-compose: `images` (service -> image to run) instead of the
    builds and pulls, `left_out` services dropped, ports bound to `bind_host` (host side from
    `host_ports` where given), `env` (service -> variables) added."""
    services = {}
    for name, service in compose["services"].items():
        if name in left_out:
            continue
        service = {k: v for k, v in service.items() if k != "build"} | {"image": images[name]}
        conditions = depends_on(service)
        if "depends_on" in service:  # the list form: podman-compose reads names only
            service["depends_on"] = list(conditions)
        service["volumes"] = [absolute_mount(m) for m in service.get("volumes", [])]
        ports = service.get("ports", [])
        service["ports"] = [published_port(p, bind_host, host_ports.get(name)) for p in ports]
        service["environment"] = dict(service.get("environment", {})) | dict(env.get(name, {}))
        services[name] = service
    return {k: v for k, v in compose.items() if k != "services"} | {"services": services}


class PodmanStack:
    """docker-compose.yml's stack under podman: `up()` builds and starts it in dependency order,
    `down()` stops and removes it (volumes too when asked). A context manager for tests."""

    def __init__(
        self,
        settings: ContainerSettings,
        *,
        project: str | None = None,
        env: Mapping[str, Mapping[str, str]] | None = None,
        host_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.compose: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
        self.project = project or settings.compose_project or self.compose["name"]
        self.env = env or {}
        self.host_ports = host_ports or {}
        self.file = settings.images_state_dir / f"{self.project}.compose.yml"
        self.log_path = settings.images_state_dir / "logs" / f"{self.project}.log"
        self.left_out: dict[str, str] = {}
        self.builder = ImageBuilder(settings)
        self.podman = self.builder.podman

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        """The services that run, as compose declares them: those of the generated file (none
        before the first `up`), less any left out since."""
        declared: dict[str, dict[str, Any]] = self.compose["services"]
        generated = yaml.safe_load(self.file.read_text())["services"] if self.file.is_file() else {}
        return {n: s for n, s in declared.items() if n in generated and n not in self.left_out}

    def __enter__(self) -> PodmanStack:
        try:
            self.up()
        except BaseException:
            self.down(volumes=True)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down(volumes=True)

    def resolve_images(self) -> dict[str, str]:
        """service -> image to run: compose's builds built, each pulled image or its stand-in;
        a service with neither is left out (reason logged)."""
        self.builder.build_project_images()  # every image a compose service builds
        images: dict[str, str] = {}
        for name, service in self.compose["services"].items():
            if "build" in service:
                images[name] = service["image"]
                continue
            try:
                images[name] = self.builder.pulled_image(name, service["image"])
            except ContainersUnavailableError as exc:
                self.left_out[name] = str(exc)
        self.left_out = left_out_with_dependents(self.compose["services"], self.left_out)
        for name, reason in self.left_out.items():
            log.warning("%s left out of the stack: %s", name, reason)
        return images

    def up(self) -> None:
        """Build, create and start the stack; one already up is taken down first (its volumes
        kept), so that every container runs the images just built."""
        self.down()
        images = self.resolve_images()
        config = podman_compose_config(
            self.compose,
            images,
            self.left_out,
            self.settings.compose_bind_host,
            self.env,
            self.host_ports,
        )
        self.file.write_text(yaml.safe_dump(config, sort_keys=False))
        log.info("podman-compose file %s (project %s)", self.file, self.project)
        # without -d: podman-compose 1.0.3 hands it on to `podman create`, which refuses it
        self.compose_command("up", "--no-build", "--no-start")
        for name in start_order(self.services):
            for dependency, condition in depends_on(self.services[name]).items():
                self.wait_for(dependency, condition)
            self.podman.run(["start", self.container(name)])
        log.info("stack %s up:\n%s", self.project, self.summary())

    def down(self, *, volumes: bool = False) -> None:
        """Stop every container with its service's grace (in reverse start order), then remove
        them, the project's networks and, with `volumes`, its volumes."""
        if not self.file.is_file():
            return
        for name in reversed(start_order(self.services)):
            if container := self.container(name, missing_ok=True):
                grace = str(grace_seconds(self.services[name]))
                self.podman.run(["stop", "--time", grace, container], check=False)
        self.compose_command("down", *(["--volumes"] if volumes else []))
        networks = self.podman.run(
            [
                *("network", "ls", "--format", "{{.Name}}"),
                *("--filter", f"label={PROJECT_LABEL}={self.project}"),
            ],
            quiet=True,
        )
        for network in networks.stdout.split():  # podman-compose 1.0.3 leaves them behind
            self.podman.run(["network", "rm", network])

    def compose_command(self, *args: str) -> None:
        self.podman.run(
            ["--project-name", self.project, "--file", str(self.file), *args],
            program="podman-compose",
            log_path=self.log_path,
        )

    def container(self, service: str, *, missing_ok: bool = False) -> str:
        """The container of `service` in this project."""
        labels = {PROJECT_LABEL: self.project, SERVICE_LABEL: service}
        found = [c["Names"][0] for c in self.podman.containers(labels)]
        if not found and not missing_ok:
            raise PodmanError(
                f"no container of {service} in project {self.project}; see {self.log_path}"
            )
        return found[0] if found else ""

    def wait_for(self, service: str, condition: str) -> None:
        """Until `service` meets `condition`; fails naming it (with its log) when it cannot."""
        container = self.container(service)
        started = time.monotonic()
        deadline = started + self.settings.compose_ready_timeout_seconds
        while not self.meets(service, container, condition):
            if time.monotonic() > deadline:
                timeout = self.settings.compose_ready_timeout_seconds
                self.fail(service, f"not {condition} within {timeout} s")
            time.sleep(self.settings.compose_poll_seconds)
        if condition != STARTED:
            log.info("%s: %s after %.0f s", service, condition, time.monotonic() - started)

    def meets(self, service: str, container: str, condition: str) -> bool:
        """Whether `service` meets `condition` now; fails when it never will."""
        state = self.podman.inspect("container", container)["State"]
        if condition == COMPLETED and state["Status"] == "exited" and state["ExitCode"] != 0:
            self.fail(service, f"exited {state['ExitCode']}")
        if condition == HEALTHY and not state["Running"]:
            self.fail(service, f"is {state['Status']}, not running")
        if condition == COMPLETED:
            return bool(state["Status"] == "exited")
        if condition == HEALTHY:
            return self.podman.health(container) == "healthy"
        return bool(state["Status"] != "created")

    def fail(self, service: str, what: str) -> NoReturn:
        logs = self.podman.run(
            ["logs", "--tail", LOG_TAIL_LINES, self.container(service)], check=False, quiet=True
        )
        raise PodmanError(f"{service} {what}; its last lines:\n{logs.stdout}{logs.stderr}")

    def published_url(self, service: str, container_port: int) -> str:
        """http://HOST:PORT where `service`'s `container_port` is published."""
        for spec in self.services[service].get("ports", []):
            *_, host_port, port = published_port(spec, "", self.host_ports.get(service)).split(":")
            if int(port) == container_port:
                return f"http://{self.settings.compose_bind_host}:{host_port}"
        raise ValueError(f"{service} publishes no port {container_port}")

    def summary(self) -> str:
        lines = []
        for name in start_order(self.services):
            container = self.container(name, missing_ok=True)
            state = self.podman.inspect("container", container)["State"] if container else {}
            ports = ", ".join(
                published_port(p, self.settings.compose_bind_host, self.host_ports.get(name))
                for p in self.services[name].get("ports", [])
            )
            lines.append(f"{name:<11} {container or '-':<28} {state.get('Status', '-'):<8} {ports}")
        for name in self.compose["services"]:
            if name not in self.services:
                reason = self.left_out.get(name, "the log of `up` says why")
                lines.append(f"{name:<11} left out: {reason}")
        return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="python -m docker.compose", description=__doc__)
    cli.add_argument("action", choices=["up", "down", "ps"])
    cli.add_argument("--volumes", action="store_true", help="down: remove the volumes too")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = load_settings(ContainerSettings)
    configure_logging(logging.INFO)
    try:
        stack = PodmanStack(settings)
        if args.action == "up":
            stack.up()
        elif args.action == "down":
            stack.down(volumes=args.volumes)
        else:
            print(stack.summary())
    except ContainersUnavailableError as exc:
        log.error("containers cannot run here: %s", exc)
        return 2
    except PodmanError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
