"""The servers the benchmark measures, started from their bundle directories with Redis unused:
the echo floor (`research.bench.echo`), the FIT service and the Two-Tower service."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from prerank_contract.settings import ENV_PREFIX
from research.service_process import ServiceProcess
from research.settings import BenchSettings

ECHO, FIT, TWO_TOWER = "echo", "fit", "two_tower"
ECHO_MODULE = "research.bench.echo"


def service_env(settings: BenchSettings) -> dict[str, str]:
    """PRERANK_* of every started server: no deadline fallback, no shutdown drain."""
    return {
        f"{ENV_PREFIX}DEADLINE_MS": str(settings.bench_deadline_ms),
        f"{ENV_PREFIX}SHUTDOWN_DRAIN_SECONDS": "0",
    }


def max_candidates(settings: BenchSettings) -> int:
    """The servers' PRERANK_MAX_CANDIDATES: the largest list any measurement sends."""
    return max(*settings.bench_candidates, settings.bench_throughput_candidates)


@contextmanager
def serving(
    bundles: Mapping[str, Path], settings: BenchSettings
) -> Iterator[dict[str, ServiceProcess]]:
    """The echo floor, FIT and Two-Tower, one process each, ready; stopped on exit. The echo floor
    reads the FIT bundle's catalogue only (ids outside it are unknown, as in the service)."""
    env, limit, logs = service_env(settings), max_candidates(settings), settings.bench_log_dir
    with (
        ServiceProcess.from_bundle_dir(
            bundles[FIT], logs / f"{ECHO}.log", limit, env_overrides=env, module=ECHO_MODULE
        ) as echo,
        ServiceProcess.from_bundle_dir(
            bundles[FIT], logs / f"{FIT}.log", limit, env_overrides=env
        ) as fit,
        ServiceProcess.from_bundle_dir(
            bundles[TWO_TOWER], logs / f"{TWO_TOWER}.log", limit, env_overrides=env
        ) as two_tower,
    ):
        yield {ECHO: echo, FIT: fit, TWO_TOWER: two_tower}
