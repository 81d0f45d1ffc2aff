"""podman as the container tools drive it: installed from Debian's packages when missing, and
configured for this kind of machine by a containers.conf of the tools' own (the runc runtime;
ulimits within the host's hard limits, which podman's defaults exceed). Every command is logged
(credentials in URLs masked) and a failure names the command with the end of its output."""

from __future__ import annotations

import json
import logging
import os
import resource
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from docker.settings import ContainerSettings
from loadtest.stack import apt_get
from prerank_contract.secrets import mask_text
from prerank_contract.settings import ENV_PREFIX

log = logging.getLogger("docker.podman")

# Debian package -> the program it brings that the tools run.
TOOL_PACKAGES = {
    "podman": "podman",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "podman-compose": "podman-compose",
}
OUTPUT_TAIL_CHARS = 3000  # of a failed command's output, quoted in its error
QUERY_TIMEOUT_SECONDS = 60.0  # an inspect, exists or healthcheck: no build, no pull
# What the host's limits allow a container at most; podman's defaults ask for more.
RLIMITS = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}
PID_MAX = Path("/proc/sys/kernel/pid_max")


class ContainersUnavailableError(RuntimeError):
    """Containers cannot run here (podman missing and not installable, or a container that does
    not start); the message says why."""


class PodmanError(RuntimeError):
    """A podman, podman-compose or mmdebstrap command failed; the message ends with its output."""


def missing_tools() -> list[str]:
    """Debian packages whose program is not on PATH."""
    return [package for package, program in TOOL_PACKAGES.items() if not shutil.which(program)]


def find_or_install_tools(settings: ContainerSettings, log_dir: Path) -> None:
    """podman, runc, mmdebstrap and podman-compose on PATH, from Debian's packages if allowed."""
    missing = missing_tools()
    if not missing:
        return
    install = " ".join(missing)
    if not settings.images_install_podman:
        raise ContainersUnavailableError(
            f"{install} not installed ({ENV_PREFIX}IMAGES_INSTALL_PODMAN=false)"
        )
    if shutil.which("apt-get") is None:
        raise ContainersUnavailableError(f"{install} not installed, and no apt-get to install it")
    if os.geteuid() != 0:
        raise ContainersUnavailableError(
            f"{install} not installed; installing needs root: apt-get install {install}"
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "apt-get.log"
    log.info("installing %s from Debian's packages (log %s)", install, log_path)
    command = ["install", "-y", *missing]
    timeout = settings.images_command_timeout_seconds
    if not apt_get(command, log_path, timeout):  # a stale package index: update, try again
        apt_get(["update"], log_path, timeout)
        apt_get(command, log_path, timeout)
    if still := missing_tools():
        raise ContainersUnavailableError(
            f"apt-get install {' '.join(still)} failed; see {log_path}"
        )


def container_ulimits() -> dict[str, int]:
    """The most of each limit a container can be given here: the host's hard limit (unlimited:
    left to podman), processes also capped by the kernel's pid_max (runc refuses more)."""
    ulimits = {}
    for name, limit in RLIMITS.items():
        hard = resource.getrlimit(limit)[1]
        if hard != resource.RLIM_INFINITY:
            ulimits[name] = hard
    if PID_MAX.is_file():
        ulimits["nproc"] = min(ulimits.get("nproc", sys.maxsize), int(PID_MAX.read_text()))
    return ulimits


def containers_conf(settings: ContainerSettings) -> Path:
    """podman's configuration for this machine, written under the state directory."""
    ulimits = [f'"{name}={value}:{value}"' for name, value in container_ulimits().items()]
    path = settings.images_state_dir / "containers.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# written by docker/podman.py for this machine\n"
        f"[containers]\ndefault_ulimits = [{', '.join(ulimits)}]\n"
        f'[engine]\nruntime = "{settings.images_runtime}"\n'
    )
    return path


def output_tail(text: str) -> str:
    return text[-OUTPUT_TAIL_CHARS:].strip()


class Podman:
    """podman (and podman-compose, mmdebstrap) run with the tools' containers.conf."""

    def __init__(self, settings: ContainerSettings) -> None:
        self.settings = settings
        self.env = dict(os.environ) | {"CONTAINERS_CONF": str(containers_conf(settings))}

    def run(
        self,
        args: Sequence[str],
        *,
        program: str = "podman",
        log_path: Path | None = None,
        timeout: float | None = None,
        check: bool = True,
        quiet: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """`program ARGS`; its output captured, or appended to `log_path` (long builds), and
        returned. A non-zero exit raises PodmanError when `check`."""
        command = [program, *args]
        shown = mask_text(shlex.join(command), ())
        if not quiet:
            log.info("%s%s", shown, f"  (log {log_path})" if log_path else "")
        timeout = timeout or self.settings.images_command_timeout_seconds
        try:
            if log_path is None:
                done = subprocess.run(
                    command, env=self.env, capture_output=True, text=True, timeout=timeout
                )
            else:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("a") as log_file:
                    done = subprocess.run(
                        command,
                        env=self.env,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        text=True,
                        timeout=timeout,
                    )
                done.stdout = log_path.read_text()
        except subprocess.TimeoutExpired as exc:
            raise PodmanError(f"{shown}: no end within {timeout} s") from exc
        if check and done.returncode != 0:
            output = output_tail((done.stdout or "") + (done.stderr or ""))
            raise PodmanError(f"{shown} exited {done.returncode}:\n{mask_text(output, ())}")
        return done

    def query(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """A quick podman command whose exit status is the answer (not raised, not logged)."""
        return self.run(args, timeout=QUERY_TIMEOUT_SECONDS, check=False, quiet=True)

    def image_exists(self, image: str) -> bool:
        return self.query(["image", "exists", image]).returncode == 0

    def inspect(self, what: str, name: str) -> dict[str, Any]:
        """`podman WHAT inspect NAME` (WHAT: image, container, volume, network) as a dict."""
        done = self.run([what, "inspect", name], timeout=QUERY_TIMEOUT_SECONDS, quiet=True)
        found: list[dict[str, Any]] = json.loads(done.stdout)
        return found[0]

    def containers(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """`podman ps -a` of the containers carrying every one of `labels`."""
        filters = [arg for k, v in labels.items() for arg in ("--filter", f"label={k}={v}")]
        done = self.run(
            ["ps", "-a", "--format", "json", *filters], timeout=QUERY_TIMEOUT_SECONDS, quiet=True
        )
        found: list[dict[str, Any]] = json.loads(done.stdout or "[]")
        return found

    def health(self, container: str) -> str:
        """Run the container's health check once (podman needs systemd timers to run it on its
        own, which this kind of machine has not) and return its status: healthy, unhealthy or
        starting."""
        self.query(["healthcheck", "run", container])
        state = self.inspect("container", container)["State"]
        health = state.get("Health") or state.get("Healthcheck") or {}
        return str(health.get("Status", "none"))
