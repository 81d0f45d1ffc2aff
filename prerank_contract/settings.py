"""Settings shared by the offline jobs and the service (one env prefix: ``PRERANK_``)."""

from __future__ import annotations

import sys
from typing import Any, TypeVar

import redis
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from prerank_contract.gate import GateConfig
from prerank_contract.keys import RedisKeys

ENV_PREFIX = "PRERANK_"


class CommonSettings(BaseSettings):
    """Where Redis is and how its keys are named; every settings class extends this."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis of the snapshot")
    redis_key_prefix: str = Field(default="prerank:", description="prefix of every Redis key")
    redis_timeout_seconds: float = Field(default=2.0, gt=0, description="socket timeout")
    gate: GateConfig = Field(
        default=GateConfig(), description="which versions may take traffic (publish and serve)"
    )

    @property
    def keys(self) -> RedisKeys:
        return RedisKeys(self.redis_key_prefix)

    def redis_client(self, timeout_seconds: float | None = None) -> redis.Redis:
        """A client (not yet connected); connecting and reading time out after
        `timeout_seconds` (default: redis_timeout_seconds)."""
        timeout = self.redis_timeout_seconds if timeout_seconds is None else timeout_seconds
        return redis.Redis.from_url(
            self.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def connect_redis(self) -> redis.Redis:
        """A client that has answered PING; raises redis.RedisError when Redis does not."""
        client = self.redis_client()
        try:
            client.ping()
        except redis.RedisError:
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
