"""The online feature store: a user's profile and recent behaviours, read from Redis.

When a read fails, the store is skipped for a backoff that doubles with each failed probe (from
`backoff_seconds` to `backoff_max_seconds`): requests meanwhile are answered degraded at once
instead of each waiting on a dead connection, and one request per backoff probes Redis again.
A read waits at most until the request's deadline (`DeadlineReader`): one cut short by it is a
failed read like any other.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from prometheus_client import Gauge
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection, ConnectionPool
from redis.retry import Retry

from prerank_contract.keys import RedisKeys
from prerank_contract.redis_client import REDIS_ERRORS, LazyClusterClient, RedisClient

log = logging.getLogger(__name__)

UserRecord = dict[str, Any]


class FeatureStoreUnavailableError(Exception):
    """Redis could not be read (or is in backoff): the caller answers in degraded mode."""


@dataclass(frozen=True)
class Outage:
    """Why the store is skipped, since when (Unix time) and until when (monotonic)."""

    error: str
    since: float
    failures: int
    retry_at: float


def time_left(deadline: float, limit: float | None) -> float | None:
    """Seconds a step may still wait: until `deadline` (time.perf_counter), at most `limit` (the
    client's socket timeout; None: no limit, and None back when there is no deadline either).
    Raises redis.TimeoutError once the deadline has passed."""
    left = deadline - time.perf_counter()
    if left <= 0:
        raise redis.TimeoutError("the request's deadline passed before Redis answered")
    if limit is None:
        return None if math.isinf(left) else left
    return min(left, limit)


class DeadlineReader:
    """GET of one key that waits at most until a deadline, and never longer than the client's
    socket timeout.

    redis-py's sync client has no per-command timeout, and its pool (re)connects a connection
    inside `get_connection` with a handshake (HELLO, CLIENT SETINFO) read under the socket
    timeout: the first probe after a read cut short (whose connection had to be dropped) would
    wait out that whole timeout on a stalled server. So the reader keeps connections of its own,
    made as the client's pool makes them (same class and arguments, TLS and credentials included)
    but without retries or CLIENT SETINFO, and bounds each step by the time left: connecting (TCP
    connect, HELLO, and SELECT when the URL names a database, each step within the time left; a
    stalled server accepts the TCP connection and answers nothing), then the reply,
    read with `read_response(timeout=...)`, which drops the connection on a timeout, so a reply
    that comes late is never read as the next one's. A reply's wait is bounded per socket read: a
    reply that arrives in pieces could take a little longer, a stalled server sends none.

    On a Redis Cluster the key's primary comes from the cluster client's slot map and is read the
    same way. A redirect (MOVED, ASK), TRYAGAIN or CLUSTERDOWN is left to the cluster client's own
    GET, which follows it and refreshes its map, bounded by the socket timeout only; so is the
    slot map's first read (`LazyClusterClient` builds the cluster client on first use)."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._idle: dict[str, list[AbstractConnection]] = {}  # per server: "" or a node's name

    def get(self, key: str, deadline: float) -> bytes | None:
        """The value of `key`, None when absent; one of REDIS_ERRORS on a failure, or
        redis.TimeoutError when the deadline or the socket timeout passed first."""
        server, pool = self._server_of(key)
        connection = self._take(server, pool)
        try:
            reply = self._exchange(connection, key, deadline, pool.connection_kwargs)
        except redis.ResponseError:  # the reply was read whole: the connection stays usable
            self._give_back(server, connection)
            if isinstance(self.client, LazyClusterClient):
                value: bytes | None = self.client.get(key)
                return value
            raise
        except BaseException:
            connection.disconnect()  # whatever it was doing, nothing half-read is kept
            self._give_back(server, connection)
            raise
        self._give_back(server, connection)
        return None if reply is None else bytes(reply)

    def _server_of(self, key: str) -> tuple[str, ConnectionPool]:
        if isinstance(self.client, LazyClusterClient):
            cluster = self.client.cluster
            node = cluster.get_node_from_key(key)
            return node.name, cluster.get_redis_connection(node).connection_pool
        return "", self.client.connection_pool

    def _take(self, server: str, pool: ConnectionPool) -> AbstractConnection:
        with self._lock:
            idle = self._idle.setdefault(server, [])
            if idle:
                return idle.pop()
        # a failed connect must fail fast: the backoff, not the connection, decides when to retry
        options = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0), "driver_info": None}
        connection: AbstractConnection = pool.connection_class(**options)
        return connection

    def _give_back(self, server: str, connection: AbstractConnection) -> None:
        with self._lock:
            self._idle[server].append(connection)

    @staticmethod
    def _exchange(
        connection: AbstractConnection, key: str, deadline: float, options: dict[str, Any]
    ) -> Any:
        limit = options.get("socket_timeout")
        try:
            # as the pool checks what it hands out: a socket with something to read was closed
            # by the server (a restart) or holds a stray reply; either way, connect afresh
            if connection.is_connected and connection.can_read():
                connection.disconnect()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()
        if not connection.is_connected:
            # connect and handshake read under these two: bound them by the time left
            connection.socket_connect_timeout = connection.socket_timeout = time_left(
                deadline, limit
            )
            connection.connect()
        connection.send_command("GET", key)
        return connection.read_response(timeout=time_left(deadline, limit))


class FeatureStore:
    def __init__(
        self,
        client: RedisClient | None,
        keys: RedisKeys,
        backoff_seconds: float,
        backoff_max_seconds: float,
        up: Gauge | None = None,
    ) -> None:
        self.client = client
        self._reader = None if client is None else DeadlineReader(client)
        self.keys = keys
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._up = up
        self._lock = threading.Lock()
        self.outage: Outage | None = None  # None while Redis answers
        if up is not None:
            up.set(0 if client is None else 1)

    @classmethod
    def offline(cls, keys: RedisKeys) -> FeatureStore:
        """A store without Redis (warm-up, an app before its lifespan connects): every user is
        unknown to it, and no answer is degraded. Without a client it never backs off."""
        return cls(None, keys, backoff_seconds=0.0, backoff_max_seconds=0.0)

    def get(
        self, store_id: str, user_id: int | str, deadline: float = math.inf
    ) -> UserRecord | None:
        """{"features": {field: value}, "history": [item ids]} or None for an unknown user.

        Records are read from the serving model's store (`Manifest.feature_store`), so a model
        never reads indices encoded for another schema. The read waits until `deadline`
        (time.perf_counter seconds) at most, and never past the client's socket timeout
        (PRERANK_FEATURE_STORE_TIMEOUT_SECONDS); a read cut short is a failure, and opens the
        backoff. Without a client (a deployment without Redis, PRERANK_USE_REDIS=false) there is
        no store to read: every user is unknown to it, which is not a degraded answer."""
        if self._reader is None:
            return None
        if time.perf_counter() >= deadline:  # no read started: nothing is known of Redis
            raise FeatureStoreUnavailableError("the request's deadline passed before the read")
        self._claim_probe()
        try:
            raw = self._reader.get(self.keys.user(store_id, user_id), deadline)
        except REDIS_ERRORS as exc:
            self._failed(exc)
            raise FeatureStoreUnavailableError(str(exc)) from exc
        if self.outage is not None:
            self._recovered()
        return None if raw is None else orjson.loads(raw)

    def _claim_probe(self) -> None:
        """Raise while in backoff; past it, let exactly one caller through to probe Redis."""
        outage = self.outage
        if outage is None:
            return
        with self._lock:
            outage = self.outage
            if outage is None:
                return
            now = time.monotonic()
            if now < outage.retry_at:
                raise FeatureStoreUnavailableError(f"in backoff after: {outage.error}")
            # the probe: later callers wait for its outcome as if still in backoff
            self.outage = Outage(outage.error, outage.since, outage.failures, now + self._delay(1))

    def _delay(self, failures: int) -> float:
        return min(self.backoff_seconds * 2 ** (failures - 1), self.backoff_max_seconds)

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            previous = self.outage
            failures = 1 if previous is None else previous.failures + 1
            since = time.time() if previous is None else previous.since
            delay = self._delay(failures)
            self.outage = Outage(str(exc), since, failures, time.monotonic() + delay)
        if previous is None:
            log.warning("feature store unreadable (%s); answering degraded", exc)
        if self._up is not None:
            self._up.set(0)

    def _recovered(self) -> None:
        with self._lock:
            outage, self.outage = self.outage, None
        if outage is not None:
            log.info("feature store answers again after %.1f s", time.time() - outage.since)
        if self._up is not None:
            self._up.set(1)

    def describe(self) -> str | None:
        """Why answers are degraded, for /readyz; None while the store answers (or when there is
        no store by configuration)."""
        outage = self.outage
        if outage is None:
            return None
        wait = max(outage.retry_at - time.monotonic(), 0.0)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(outage.since))
        return (
            f"Redis unreadable since {started} ({outage.failures} failed reads, next try in "
            f"{wait:.1f} s): {outage.error}"
        )
