"""Redis clients for a single server or a Redis Cluster, behind one set of calls.

Every key of the contract (`prerank_contract.keys`) is read and written one key at a time, in
non-transactional pipelines, or with `get_many`; none of them needs two keys in one slot. So the
same code runs against a single server and against a cluster, where redis-py routes each command
(and splits each pipeline) by key slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

# A cluster client raises RedisClusterException (not a RedisError) when it cannot map the slots,
# e.g. when no node answers: both mean "Redis cannot be used now".
REDIS_ERRORS = (redis.RedisError, RedisClusterException)


class LazyClusterClient:
    """A RedisCluster built on first use, and again on the next use after that failed.

    redis-py's cluster client reads the slot map from a node in its constructor; a service that
    starts while the cluster is down must still start (serving its local bundle) and follow the
    cluster once it answers, as it does with a single server. Attributes are those of the
    underlying `RedisCluster`; building it raises redis.ConnectionError when no node answers."""

    def __init__(self, url: str, build: Callable[[], RedisCluster]) -> None:
        self._url = url
        self._build = build
        self._client: RedisCluster | None = None

    @property
    def cluster(self) -> RedisCluster:
        if self._client is None:
            try:
                self._client = self._build()
            except RedisClusterException as exc:
                raise redis.ConnectionError(
                    f"Redis Cluster at {self._url} not reachable: {exc}"
                ) from exc
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


RedisClient: TypeAlias = redis.Redis | LazyClusterClient


def new_client(url: str, *, cluster: bool, timeout_seconds: float, retries: int) -> RedisClient:
    """A client (a single server's is not yet connected; a cluster's connects on first use).

    `retries`: how often a cluster command is retried (after re-reading the slot map) when a
    node does not answer; a single server's commands are not retried."""
    if not cluster:
        return redis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds
        )

    def build() -> RedisCluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), retries),
        )

    return LazyClusterClient(url, build)


def get_many(client: Any, keys: Sequence[str]) -> list[bytes | None]:
    """The values of `keys`, in order: one MGET on a single server; on a cluster, where the keys
    may lie in different slots, one MGET per slot (redis-py's `mget_nonatomic`)."""
    if isinstance(client, LazyClusterClient | RedisCluster):
        values: list[bytes | None] = client.mget_nonatomic(list(keys))
        return values
    values = client.mget(list(keys))
    return values
