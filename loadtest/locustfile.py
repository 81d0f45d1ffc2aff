"""Locust user of /prerank: ``locust -f loadtest/locustfile.py --host http://127.0.0.1:8000``.

Bodies are drawn once from a bundle's catalogue (`LoadSettings`); each task posts one and checks
that the answer is a 200 with items. A degraded answer is counted as its own request name, so the
report separates it."""

from __future__ import annotations

import itertools

from locust import FastHttpUser, between, task

from loadtest.settings import LoadSettings, request_bodies

BODIES = 256  # distinct bodies cycled through by every user

_settings = LoadSettings()
_bodies = [body.decode() for body in request_bodies(_settings, BODIES)]


class PrerankUser(FastHttpUser):
    wait_time = between(0.0, 0.002)

    def on_start(self) -> None:
        self._bodies = itertools.cycle(_bodies)

    @task
    def prerank(self) -> None:
        with self.client.post(
            "/prerank",
            data=next(self._bodies),
            headers={"content-type": "application/json"},
            catch_response=True,
            name="/prerank",
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif not response.json()["items"]:
                response.failure("no items")
