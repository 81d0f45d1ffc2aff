"""``python -m research.id_bench`` (``make bench-ids``): what the caller's string ids cost.

The same synthetic world trained twice with the same FIT configuration: once from the built-in
loader (integer ids that are the model's own indices, looked up by a direct index) and once from
its files as a team would hand them over (`offline_jobs.data.example`: string ids such as
"B000000017", read through a dataset spec, looked up in the version's vocabulary). Both bundles
are served by the real service (Redis unused: each request carries its history) and driven by one
closed-loop client with the same requests, the ids spelled each way, in rounds that alternate
the two targets. Writes docs/benchmarks/ids.md and prints the ratio of the p50s against its goal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
from pydantic import Field

from offline_jobs.data.dataset import InteractionData
from offline_jobs.data.example import ExampleFiles, user_key, write_example
from offline_jobs.data.spec import load_spec
from offline_jobs.data.spec_data import load_spec_data
from offline_jobs.data.synthetic import SyntheticConfig, generate_synthetic
from offline_jobs.pipeline import build_all
from offline_jobs.settings import JobSettings
from offline_jobs.training.config import TrainConfig
from prerank_contract.settings import CommonSettings, configure_logging, load_settings
from research.http_client import closed_loop
from research.service_process import ServiceProcess
from research.settings import REPO_ROOT

log = logging.getLogger("research.id_bench")

INTEGER, STRING = "integer ids", "string ids"


class IdBenchSettings(CommonSettings):
    """Sizes, rounds and the goal of the string-id benchmark."""

    id_bench_candidates: int = Field(default=5000, ge=1, description="candidates per request")
    id_bench_requests: int = Field(default=200, ge=1, description="timed requests per round")
    id_bench_warmup: int = Field(default=20, ge=0, description="untimed requests per round")
    id_bench_rounds: int = Field(default=3, ge=1, description="rounds, the order alternating")
    id_bench_epochs: int = Field(
        default=1, ge=1, description="training epochs of each bundle (latency needs no accuracy)"
    )
    id_bench_seed: int = Field(default=7, description="draws the requests")
    id_bench_goal: float = Field(
        default=1.3, gt=0, description="largest p50(string ids) / p50(integer ids)"
    )
    id_bench_dir: Path = Field(
        default=REPO_ROOT / "artifacts" / "id-bench",
        description="the files and bundles (reused while their configuration is unchanged)",
    )
    id_bench_report: Path = Field(
        default=REPO_ROOT / "docs" / "benchmarks" / "ids.md", description="the report"
    )


@dataclass(frozen=True)
class Target:
    name: str
    bundle: Path
    bodies: list[bytes]


@dataclass(frozen=True)
class Figures:
    name: str
    p50_ms: float
    p99_ms: float
    errors: int


def train_fit(data: InteractionData, folder: Path, epochs: int) -> Path:
    """A FIT bundle of `data` in `folder` (reused when one of the same configuration is there)."""
    settings = JobSettings(artifacts_dir=folder, models=("fit",), train=TrainConfig(epochs=epochs))
    bundles = build_all(settings, data, retrain=False, progress=False)
    return bundles["fit"][0]


def request_bodies(
    data: InteractionData, keys: list[str] | None, settings: IdBenchSettings, count: int
) -> list[bytes]:
    """`count` JSON bodies: a user, that user's latest history and `id_bench_candidates` catalogue
    items in random order; ids as the built-in indices, or as `keys` (index i -> keys[i - 1])."""
    rng = np.random.default_rng(settings.id_bench_seed)
    size = min(settings.id_bench_candidates, data.num_items)
    bodies = []
    for _ in range(count):
        user = int(rng.integers(1, data.num_users + 1))
        items = rng.choice(data.catalogue, size=size, replace=False)
        history = data.latest_histories[user]
        history = history[history != 0]
        if keys is None:
            body = {"user_id": user, "history": history.tolist(), "candidates": items.tolist()}
        else:
            ids = np.asarray(keys)
            body = {
                "user_id": user_key(user),
                "history": ids[history - 1].tolist(),
                "candidates": ids[items - 1].tolist(),
            }
        bodies.append(orjson.dumps(body))
    return bodies


def prepare(settings: IdBenchSettings) -> tuple[Target, Target]:
    """Both bundles and their request bodies."""
    world = SyntheticConfig()
    data = generate_synthetic(world, progress=False)
    files: ExampleFiles = write_example(
        data,
        settings.id_bench_dir / "files",
        history={"length": world.max_history},  # the built-in loader's history length
    )
    from_spec = load_spec_data(load_spec(files.spec))
    count = settings.id_bench_warmup + settings.id_bench_requests
    integer = Target(
        INTEGER,
        train_fit(data, settings.id_bench_dir / "integer", settings.id_bench_epochs),
        request_bodies(data, None, settings, count),
    )
    string = Target(
        STRING,
        train_fit(from_spec, settings.id_bench_dir / "string", settings.id_bench_epochs),
        request_bodies(data, files.items, settings, count),
    )
    return integer, string


def measure(targets: tuple[Target, Target], settings: IdBenchSettings) -> list[Figures]:
    """Both targets served at once; rounds alternate which goes first."""
    latencies: dict[str, list[np.ndarray]] = {t.name: [] for t in targets}
    errors = dict.fromkeys(latencies, 0)
    logs = settings.id_bench_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    limit = settings.id_bench_candidates
    with (
        ServiceProcess.from_bundle_dir(targets[0].bundle, logs / "integer.log", limit) as first,
        ServiceProcess.from_bundle_dir(targets[1].bundle, logs / "string.log", limit) as second,
    ):
        urls = {targets[0].name: first.url, targets[1].name: second.url}
        for round_index in range(settings.id_bench_rounds):
            order = targets if round_index % 2 == 0 else targets[::-1]
            for target in order:
                run = closed_loop(f"{urls[target.name]}/prerank", target.bodies)
                timed = run.latencies_ms[settings.id_bench_warmup :]
                latencies[target.name].append(timed)
                errors[target.name] += run.errors
                log.info("round %d %s: p50 %.2f ms", round_index, target.name, np.median(timed))
    return [
        Figures(
            name,
            float(np.percentile(np.concatenate(runs), 50)),
            float(np.percentile(np.concatenate(runs), 99)),
            errors[name],
        )
        for name, runs in latencies.items()
    ]


def report(figures: list[Figures], settings: IdBenchSettings, command: str) -> tuple[str, str]:
    """(the markdown report, the verdict line)."""
    by_name = {f.name: f for f in figures}
    ratio = by_name[STRING].p50_ms / by_name[INTEGER].p50_ms
    errors = sum(f.errors for f in figures)
    passed = ratio <= settings.id_bench_goal and errors == 0
    verdict = (
        f"{'PASS' if passed else 'MISS'} /prerank p50 with {settings.id_bench_candidates:,} "
        f"string ids / with integer ids: {ratio:.2f} (<= {settings.id_bench_goal:g}); "
        f"{errors} errors"
    )
    rows = "\n".join(
        f"| {f.name} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | {f.errors} |" for f in figures
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    text = f"""# What string ids cost

Written on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}` (`make bench-ids`). One run on
one machine ({os.cpu_count()} logical cores; load average at the end {load}): compare the ratio,
not the times.

The default synthetic world ({SyntheticConfig().num_items:,} items) trained twice with the same
FIT configuration ({settings.id_bench_epochs} epoch): from the built-in loader, whose integer ids
are the model's indices (a direct index finds them), and from its files as a team hands them over
(`python -m offline_jobs example`: string ids read through a dataset spec, found by binary search
in the version's vocabulary). Each served by `python -m service` from its bundle directory, Redis
unused: every request carries a user id, that user's latest history (up to 20 ids) and
{settings.id_bench_candidates:,} candidates, the same requests with the ids spelled each way.
{settings.id_bench_rounds} rounds of {settings.id_bench_warmup} untimed + \
{settings.id_bench_requests} timed requests per target, the order alternating.

| ids | p50 ms | p99 ms | errors |
|---|--:|--:|--:|
{rows}

**{verdict}**
"""
    return text, verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.id_bench", description=__doc__)
    parser.parse_args(argv)
    configure_logging(logging.INFO)
    settings = load_settings(IdBenchSettings)
    figures = measure(prepare(settings), settings)
    text, verdict = report(figures, settings, "python -m research.id_bench")
    settings.id_bench_report.parent.mkdir(parents=True, exist_ok=True)
    partial = settings.id_bench_report.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(settings.id_bench_report)
    print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
