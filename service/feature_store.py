"""The online feature store: a user's profile and recent behaviours, read from Redis."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import redis

from prerank_contract.keys import RedisKeys

log = logging.getLogger(__name__)

UserRecord = dict[str, Any]


class FeatureStoreUnavailableError(Exception):
    """Redis could not be read: the caller answers in degraded mode."""


class FeatureStore:
    def __init__(self, client: redis.Redis | None, keys: RedisKeys) -> None:
        self.client = client
        self.keys = keys

    def get(self, schema_fingerprint: str, user_id: int) -> UserRecord | None:
        """{"features": {field: value}, "history": [item ids]} or None for an unknown user.

        Records are read under the fingerprint of the serving model's feature schema, so a model
        never reads features encoded for another schema."""
        if self.client is None:
            raise FeatureStoreUnavailableError("no Redis connection")
        try:
            raw = self.client.get(self.keys.user(schema_fingerprint, user_id))
        except redis.RedisError as exc:
            log.warning("feature store read failed: %s", exc)
            raise FeatureStoreUnavailableError(str(exc)) from exc
        return None if raw is None else orjson.loads(raw)
