"""Typed settings of the event consumer (env prefix ``PRERANK_``, every name ``EVENTS_...``).

Apart from `offline_jobs.settings.JobSettings`, which imports the training stack: the consumer
starts without torch."""

from __future__ import annotations

import os
import socket

from pydantic import Field, model_validator

from prerank_contract.settings import CommonSettings

MS_PER_SECOND = 1000


def default_consumer_name() -> str:
    """host-pid: unique among the consumers of one group, as XREADGROUP needs."""
    return f"{socket.gethostname()}-{os.getpid()}"


class EventSettings(CommonSettings):
    """What `python -m offline_jobs events` reads: its consumer group, batches, claims, trimming,
    retries, backoff and metrics port."""

    events_group: str = Field(
        default="feature-store", description="consumer group of the events stream"
    )
    events_consumer: str | None = Field(
        default=None,
        description="this consumer's name in the group, unique in it (default: host-pid)",
    )
    events_group_start_id: str = Field(
        default="0",
        description="where a group created by the consumer starts reading: 0 (every entry the "
        "stream holds) or $ (only entries added from then on)",
    )
    events_batch_size: int = Field(
        default=500, ge=1, description="entries per XREADGROUP (COUNT) and per XAUTOCLAIM page"
    )
    events_block_ms: int = Field(
        default=500, ge=1, description="longest wait of an XREADGROUP for new entries (BLOCK)"
    )
    events_claim_idle_seconds: float = Field(
        default=30.0,
        gt=0,
        description="entries another consumer has held unacknowledged this long are claimed "
        "(XAUTOCLAIM): that consumer is taken for dead",
    )
    events_claim_interval_seconds: float = Field(
        default=5.0, gt=0, description="how often idle entries are looked for (and at start)"
    )
    events_max_id_length: int = Field(
        default=256, ge=1, description="longest user or item id (bytes); longer: dead letter"
    )
    events_write_retries: int = Field(
        default=5,
        ge=0,
        description="re-reads of a record another consumer wrote between this one's read and "
        "its compare-and-set; past them the entries stay pending and are claimed later",
    )
    events_stream_max_length: int = Field(
        default=1_000_000,
        ge=0,
        description="the stream is trimmed to about this many entries after each batch "
        "(XTRIM MAXLEN ~; 0: never); keep it above the worst lag, or unread entries are lost",
    )
    events_dead_max_length: int = Field(
        default=100_000, ge=0, description="dead letters kept, about (MAXLEN ~; 0: all)"
    )
    events_clock_skew_seconds: float = Field(
        default=60.0,
        ge=0,
        description="how far the clocks of the Redis nodes holding the stream and its dead "
        "letters may differ: a claimed entry's dead letter is looked for from its own time less "
        "this, so a consumer killed between dead-lettering and acking leaves no duplicate",
    )
    events_backoff_seconds: float = Field(
        default=0.1, gt=0, description="first wait after a failed Redis command"
    )
    events_backoff_max_seconds: float = Field(
        default=5.0, gt=0, description="the wait doubles with each failure, up to this"
    )
    events_pointer_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="how often the active pointer and the A/B split are read: the stores "
        "written are those of the versions they name",
    )
    events_stats_interval_seconds: float = Field(
        default=5.0, gt=0, description="how often the group's lag and pending count are read"
    )
    events_metrics_port: int = Field(
        default=9101, ge=0, le=65535, description="Prometheus metrics port (0: not served)"
    )
    events_log_level: str = Field(default="info", description="consumer log level")

    @model_validator(mode="after")
    def _block_within_timeout(self) -> EventSettings:
        """A blocked XREADGROUP waits on the socket: past its timeout it would read as a failure."""
        if self.events_block_ms >= self.redis_timeout_seconds * MS_PER_SECOND:
            raise ValueError(
                f"events_block_ms ({self.events_block_ms}) must stay under redis_timeout_seconds "
                f"({self.redis_timeout_seconds} s)"
            )
        return self

    @property
    def consumer_name(self) -> str:
        return self.events_consumer or default_consumer_name()
