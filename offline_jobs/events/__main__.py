"""``python -m offline_jobs.events`` (also ``python -m offline_jobs events``): run one consumer of
the events stream until SIGTERM or SIGINT. Imports no torch, so it starts in well under a second."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from offline_jobs.events.consumer import EventConsumer
from offline_jobs.events.metrics import EventMetrics
from offline_jobs.events.settings import EventSettings
from prerank_contract.settings import configure_logging, load_settings

log = logging.getLogger(__name__)
DESCRIPTION = (
    "Apply user events from the Redis stream {prefix}events to the feature-store records of the "
    "served versions (one member of a consumer group; run several). Settings: PRERANK_EVENTS_* "
    "and the Redis ones (docs/CONFIGURATION.md)."
)


def parser(prog: str = "python -m offline_jobs.events") -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=DESCRIPTION)


def run_consumer(settings: EventSettings) -> int:
    """Serve the metrics, consume until a stop signal; exit status 0."""
    metrics = EventMetrics()
    metrics.serve(settings.events_metrics_port)
    consumer = EventConsumer(settings.redis_client(), settings, metrics)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping after this pass", signum)
        consumer.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.run()
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m offline_jobs.events") -> int:
    parser(prog).parse_args(argv)
    settings = load_settings(EventSettings)
    configure_logging(settings.events_log_level.upper())
    return run_consumer(settings)


if __name__ == "__main__":
    sys.exit(main())
