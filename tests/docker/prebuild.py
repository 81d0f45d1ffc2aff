"""The container tests' images built ahead, in the background, while the rest of the suite runs.

A cold build (a Debian base, then every pip and apt install) takes minutes of mostly waiting on
downloads and unpacking, which the suite, itself mostly waiting on services, leaves room for. So a
session that will run a test needing the images starts this at the end of collection, at the
lowest CPU priority, and those tests run last: by then their own builds find every layer cached.

    python -m tests.docker.prebuild STATE_DIR RESULT_JSON

builds compose's images and the stand-ins of the pulled images, as the tests ask for them, and
writes tag -> build seconds. A failure only loses the head start: the tests build as before and
fail or skip with the reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from docker.images import ImageBuilder, compose_services
from docker.podman import ContainersUnavailableError, PodmanError, find_or_install_tools
from docker.settings import ContainerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.docker.prebuild"
IMAGE_FIXTURE = "image_builder"  # every container test reaches the images through it
RESULT_FILE = "built.json"
LOG_FILE = "prebuild.log"
STOP_SECONDS = 30.0  # for podman to end its build steps on SIGTERM before they are killed
# The lowest priority: the build takes only what the suite leaves idle, so the timing of the tests
# running beside it does not change.
NICENESS = "19"


@dataclass
class Prebuild:
    """The background build of one test session: its process and where it writes."""

    process: subprocess.Popen[bytes]
    folder: Path

    @classmethod
    def start(cls) -> Prebuild | None:
        """Started, once podman and its tools are installed (apt-get runs here, before any
        test: never beside a test's own apt-get); None where containers cannot be had."""
        folder = Path(tempfile.mkdtemp(prefix="prerank-prebuild-"))
        settings = ContainerSettings(images_state_dir=folder / "state")
        try:
            find_or_install_tools(settings, folder / "logs")
        except ContainersUnavailableError:  # the tests skip, saying why
            shutil.rmtree(folder, ignore_errors=True)
            return None
        with (folder / LOG_FILE).open("wb") as log_file:
            process = subprocess.Popen(
                [
                    *("nice", "-n", NICENESS, sys.executable, "-m", MODULE),
                    *(str(folder / "state"), str(folder / RESULT_FILE)),
                ],
                cwd=REPO_ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() reaches podman and its build steps too
            )
        return cls(process, folder)

    def result(self, timeout_seconds: float) -> dict[str, float] | None:
        """Wait for the build; tag -> seconds of each compose image, or None where it failed."""
        try:
            self.process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.stop()
            return None
        result = self.folder / RESULT_FILE
        if self.process.returncode != 0 or not result.is_file():
            return None
        built: dict[str, float] = json.loads(result.read_text())
        return built

    def stop(self) -> None:
        """End the build if it still runs (a session cut short) and remove its files."""
        if self.process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # gone meanwhile
            os.killpg(self.process.pid, signum)


def main(state_dir: Path, result_path: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        builder = ImageBuilder(ContainerSettings(images_state_dir=state_dir))
        built = builder.build_project_images()
        for name, service in compose_services().items():
            if "build" not in service:
                with contextlib.suppress(ContainersUnavailableError):  # no stand-in: left out
                    builder.pulled_image(name, service["image"])
    except (ContainersUnavailableError, PodmanError) as exc:
        logging.error("prebuild failed: %s", exc)
        return 1
    result_path.write_text(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
