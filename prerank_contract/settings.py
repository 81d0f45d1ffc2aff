"""Settings shared by the offline jobs and the service (one env prefix: ``PRERANK_``)."""

from __future__ import annotations

import sys
from typing import Any, TypeVar
from urllib.parse import urlparse

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prerank_contract.gate import GateConfig
from prerank_contract.keys import RedisKeys
from prerank_contract.redis_client import REDIS_ERRORS, RedisClient, new_client

ENV_PREFIX = "PRERANK_"


class CommonSettings(BaseSettings):
    """Where Redis is and how its keys are named; every settings class extends this."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis of the snapshot")
    redis_cluster: bool = Field(
        default=False,
        description="redis_url names one node of a Redis Cluster (keys are routed by slot)",
    )
    redis_cluster_retries: int = Field(
        default=2, ge=0, description="retries of a cluster command whose node does not answer"
    )
    redis_key_prefix: str = Field(default="prerank:", description="prefix of every Redis key")
    redis_timeout_seconds: float = Field(default=2.0, gt=0, description="socket timeout")
    gate: GateConfig = Field(
        default=GateConfig(), description="which versions may take traffic (publish and serve)"
    )

    @model_validator(mode="after")
    def _cluster_has_one_database(self) -> CommonSettings:
        if self.redis_cluster and urlparse(self.redis_url).path.strip("/") not in ("", "0"):
            raise ValueError(
                f"redis_url: a Redis Cluster has database 0 only, not {self.redis_url!r}"
            )
        return self

    @property
    def keys(self) -> RedisKeys:
        return RedisKeys(self.redis_key_prefix)

    def redis_client(self, timeout_seconds: float | None = None) -> RedisClient:
        """A client (not yet connected); connecting and reading time out after
        `timeout_seconds` (default: redis_timeout_seconds)."""
        timeout = self.redis_timeout_seconds if timeout_seconds is None else timeout_seconds
        return new_client(
            self.redis_url,
            cluster=self.redis_cluster,
            timeout_seconds=timeout,
            retries=self.redis_cluster_retries,
        )

    def connect_redis(self) -> RedisClient:
        """A client that has answered PING; raises one of REDIS_ERRORS when Redis does not."""
        client = self.redis_client()
        try:
            client.ping()
        except REDIS_ERRORS:
            client.close()
            raise
        return client


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def load_settings(settings_class: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read the settings from the environment (`overrides`, e.g. from command-line flags, win);
    on invalid values print one message naming each field and exit with status 2 (a CLI error,
    not a traceback)."""
    try:
        return settings_class(**overrides)
    except ValidationError as exc:
        print(f"error: invalid {ENV_PREFIX}* settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
