"""Locust user of /prerank: ``locust -f loadtest/locustfile.py --host http://127.0.0.1:8000``
runs fixed users (``-u``/``-r``/``--run-time``, as the soak does); ``-f loadtest/shape.py`` runs
the same user under the ramp/steady/spike shape.

Bodies are drawn once per process (`loadtest.workload`, `LoadSettings`): published user ids,
catalogue candidates of varied sizes with unknown and duplicate ids. Users share one cycle through
them; each task posts the next and checks that the answer is a 200 with items. A degraded answer
is counted under its own request name, so the report separates it. PRERANK_LOAD_WIRE_FORMAT picks
the wire format (JSON, MessagePack or columnar JSON), the same for every user of the run."""

from __future__ import annotations

import csv
import functools
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import orjson
from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from loadtest.settings import LoadSettings
from loadtest.workload import DEGRADED_REQUEST_NAME, REQUEST_NAME, body_pool
from prerank_contract.http import (
    ANSWER_TYPES,
    ITEM_IDS,
    JSON_TYPE,
    MSGPACK_TYPE,
    AnswerFormat,
)


@events.init.add_listener
def draw_bodies_before_the_run(**_kwargs: Any) -> None:
    """Draw the pool before any user starts; a missing catalogue or invalid settings stop Locust
    here with the reason, not in every user."""
    try:
        body_pool()
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: no request bodies: {exc}") from exc


@events.quitting.add_listener
def write_final_stats(environment: Environment, **_kwargs: Any) -> None:
    """Rewrite ``--csv``'s stats and failures with the final figures: Locust rewrites them once a
    second while it runs but not at exit, so the last second and the stop timeout's requests
    would be missing (the HTML report has them)."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix:  # no --csv, or a worker process (its master writes the files)
        return
    stats = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with Path(f"{prefix}_stats.csv").open("w", newline="") as handle:
        stats.requests_csv(csv.writer(handle))
    with Path(f"{prefix}_failures.csv").open("w", newline="") as handle:
        stats.failures_csv(csv.writer(handle))


@functools.cache
def wire_format() -> AnswerFormat:
    return LoadSettings().load_wire_format


@functools.cache
def request_headers() -> dict[str, str]:
    body_type = MSGPACK_TYPE if wire_format() == "msgpack" else JSON_TYPE
    return {"content-type": body_type, "accept": ANSWER_TYPES[wire_format()]}


@functools.cache
def body_cycle() -> Iterator[str | bytes]:
    """One cycle through the pool shared by this process's users (not one lockstep cycle each),
    in the run's wire format: re-encoded once here, so no user pays for it during the run."""
    bodies: tuple[str | bytes, ...] = body_pool()
    if wire_format() == "msgpack":
        bodies = tuple(msgpack.packb(orjson.loads(body)) for body in bodies)
    return itertools.cycle(bodies)


def scored_items_and_degraded(content: bytes) -> tuple[int, bool]:
    """How many items an answer in the run's wire format scored, and whether it is degraded."""
    wire = wire_format()
    answer = msgpack.unpackb(content) if wire == "msgpack" else orjson.loads(content)
    items = answer["items"] if wire == "json" else answer[ITEM_IDS]
    return len(items), bool(answer["degraded"])


class PrerankUser(FastHttpUser):
    wait_time = between(0.0, 0.002)

    @task
    def prerank(self) -> None:
        with self.client.post(
            "/prerank",
            # FastHttpSession sends bytes as they are (its docstring says String/bytes); only its
            # annotation leaves bytes out.
            data=next(body_cycle()),  # type: ignore[arg-type]
            headers=request_headers(),
            catch_response=True,
            name=REQUEST_NAME,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            items, degraded = scored_items_and_degraded(response.content)
            if not items:
                response.failure("no items")
            elif degraded:
                response.request_meta["name"] = DEGRADED_REQUEST_NAME
