"""The ramp / steady / spike / recovery load shape: ``locust -f loadtest/shape.py`` runs the
/prerank user of `loadtest.locustfile` under it (stages from `LoadSettings`' ``load_shape_*``).

Locust lets any shape class found in a loaded locustfile drive the run and ignores ``-u``, ``-r``
and ``--run-time`` then (no flag turns a shape off), so the shape lives in its own file and
``-f loadtest/locustfile.py`` alone keeps running fixed users, as the soak does."""

from __future__ import annotations

from locust import LoadTestShape

from loadtest.locustfile import PrerankUser
from loadtest.settings import LoadSettings
from loadtest.workload import shape_stages, stage_at

__all__ = ["PrerankShape", "PrerankUser"]  # Locust takes the user class from this module too


class PrerankShape(LoadTestShape):
    """Each tick: the current stage's (users, spawn rate); None once the last stage is over,
    which ends a headless run."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = shape_stages(LoadSettings())

    def tick(self) -> tuple[int, float] | None:
        stage = stage_at(self.stages, self.get_run_time())
        return None if stage is None else (stage.users, stage.spawn_rate)
