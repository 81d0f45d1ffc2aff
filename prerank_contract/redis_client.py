"""Redis clients for a single server or a Redis Cluster, behind one set of calls.

Every key of the contract (`prerank_contract.keys`) is read and written one key at a time, in
non-transactional pipelines, or with `get_many`; none of them needs two keys in one slot. So the
same code runs against a single server and against a cluster, where redis-py routes each command
(and splits each pipeline) by key slot.

A ``rediss://`` URL turns TLS on, with the CA, client certificate and key of `TLSFiles`; a TLS
handshake that fails raises `TLSHandshakeError`, whose message names TLS and what to check.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from prerank_contract.secrets import redact_url

# A cluster client raises RedisClusterException (not a RedisError) when it cannot map the slots,
# e.g. when no node answers: both mean "Redis cannot be used now".
REDIS_ERRORS = (redis.RedisError, RedisClusterException)
TLS_SCHEME = "rediss"  # the URL scheme that turns TLS on, as redis-py reads it


class TLSHandshakeError(redis.ConnectionError):
    """A TLS connection to Redis that failed its handshake: the server's certificate did not
    verify, or the server refused the client (no or an unknown client certificate), or it does not
    speak TLS on that port. A connection error like any other to whoever waits for Redis to
    answer; one that connects to start its work stops instead (`TLSSetupError`)."""


class TLSSetupError(ValueError):
    """A TLS handshake with Redis that failed as a job or tool connected to start its work: a
    setting to fix (CA, client certificate, host name, port), not an outage to wait out, so not
    one of REDIS_ERRORS; a CLI stops on it with status 2, as on any invalid value."""


def ssl_failure(error: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `error` (itself, or what it was raised from or during), if any."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def describe_file_error(error: OSError) -> str:
    """Why a TLS file did not load: OpenSSL's reason (``KEY_VALUES_MISMATCH``), else the
    system's (``No such file or directory``)."""
    reason = getattr(error, "reason", None) or error.strerror or error
    return f"{error.__class__.__name__}: {reason}"


def describe_tls_failure(failure: ssl.SSLError, address: str) -> str:
    """What went wrong in a TLS handshake with Redis at `address`, and which settings to check."""
    if isinstance(failure, ssl.SSLCertVerificationError):
        return (
            f"TLS verification failed: the certificate of Redis at {address} does not verify "
            f"({failure.verify_message}); check PRERANK_REDIS_TLS_CA_FILE, and that the "
            "certificate names the host connected to"
        )
    return (
        f"TLS handshake with Redis at {address} failed ({failure.reason or failure}): check that "
        "it serves TLS on that port, and the client certificate it may require "
        "(PRERANK_REDIS_TLS_CERT_FILE, PRERANK_REDIS_TLS_KEY_FILE)"
    )


class TLSConnection(redis.SSLConnection):
    """redis-py's TLS connection, whose failed handshake says so: `TLSHandshakeError`. The
    handshake ends at the first reply read (TLS 1.3 reports a refused client certificate then),
    so the whole connect, AUTH and HELLO included, is checked."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        try:
            super().connect_check_health(
                check_health=check_health, retry_socket_connect=retry_socket_connect
            )
        except redis.ConnectionError as exc:
            failure = ssl_failure(exc)
            if failure is None or isinstance(exc, TLSHandshakeError):
                raise
            raise TLSHandshakeError(
                describe_tls_failure(failure, f"{self.host}:{self.port}")
            ) from exc


@dataclass(frozen=True)
class TLSFiles:
    """What a TLS connection to Redis trusts and presents (PEM files): `ca_file`, the CA
    certificates the server's certificate must verify against (None: the system's trust store);
    `cert_file` and `key_file`, the client's certificate and its unencrypted key, for a server
    that requires one (None: none presented). `check_hostname`: the server's certificate must
    name the host connected to."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    check_hostname: bool = True

    def check_ca(self) -> None:
        """Load `ca_file` as a connection will; ValueError naming it when it does not load."""
        if self.ca_file is None:
            return
        try:
            ssl.create_default_context().load_verify_locations(cafile=self.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"{self.ca_file} does not load as CA certificates ({describe_file_error(exc)})"
            ) from None

    def check_client_certificate(self) -> None:
        """Load `cert_file` and `key_file` as a connection will; ValueError naming them when they
        do not load as a certificate and its key."""
        if self.cert_file is None:
            return
        try:
            ssl.create_default_context().load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"{self.cert_file} and {self.key_file} do not load as a certificate and its "
                f"unencrypted key ({describe_file_error(exc)})"
            ) from None

    def connection_options(self) -> dict[str, Any]:
        """redis-py's connection arguments for these files."""
        return {
            "connection_class": TLSConnection,
            "ssl_ca_certs": None if self.ca_file is None else str(self.ca_file),
            "ssl_certfile": None if self.cert_file is None else str(self.cert_file),
            "ssl_keyfile": None if self.key_file is None else str(self.key_file),
            "ssl_check_hostname": self.check_hostname,
        }


def uses_tls(url: str) -> bool:
    """Whether `url` asks for TLS (``rediss://``)."""
    return urlsplit(url).scheme == TLS_SCHEME


class LazyClusterClient:
    """A RedisCluster built on first use, and again on the next use after that failed.

    redis-py's cluster client reads the slot map from a node in its constructor; a service that
    starts while the cluster is down must still start (serving its local bundle) and follow the
    cluster once it answers, as it does with a single server. Attributes are those of the
    underlying `RedisCluster`; building it raises redis.ConnectionError when no node answers."""

    def __init__(self, url: str, build: Callable[[], RedisCluster]) -> None:
        self._url = redact_url(url)  # only ever shown, in the error below
        self._build = build
        self._client: RedisCluster | None = None

    @property
    def cluster(self) -> RedisCluster:
        if self._client is None:
            try:
                self._client = self._build()
            except RedisClusterException as exc:
                failure = ssl_failure(exc)
                error = TLSHandshakeError if failure is not None else redis.ConnectionError
                raise error(f"Redis Cluster at {self._url} not reachable: {exc}") from exc
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


RedisClient: TypeAlias = redis.Redis | LazyClusterClient


def new_client(
    url: str,
    *,
    cluster: bool,
    timeout_seconds: float,
    retries: int,
    username: str | None = None,
    password: str | None = None,
    tls: TLSFiles | None = None,
) -> RedisClient:
    """A client (a single server's is not yet connected; a cluster's connects on first use).

    `retries`: how often a cluster command is retried (after re-reading the slot map) when a
    node does not answer; a single server's commands are not retried. `username` and `password`
    are given apart from `url`, which then holds none (redis-py prefers the URL's). A
    ``rediss://`` URL connects with TLS, trusting and presenting `tls`'s files (None: the system's
    trust store, no client certificate)."""
    options: dict[str, Any] = {
        name: value
        for name, value in (("username", username), ("password", password))
        if value is not None
    }
    options |= {"socket_timeout": timeout_seconds, "socket_connect_timeout": timeout_seconds}
    connect_url = url
    if uses_tls(url):
        options |= (tls or TLSFiles()).connection_options()
        # redis-py's cluster client lets a rediss:// URL override the connection class given;
        # the class given carries the TLS, so the URL need not
        connect_url = urlunsplit(urlsplit(url)._replace(scheme="redis"))
    if not cluster:
        return redis.Redis.from_url(connect_url, **options)

    def build() -> RedisCluster:
        return RedisCluster.from_url(connect_url, retry=Retry(NoBackoff(), retries), **options)

    return LazyClusterClient(url, build)


def get_many(client: Any, keys: Sequence[str]) -> list[bytes | None]:
    """The values of `keys`, in order: one MGET on a single server; on a cluster, where the keys
    may lie in different slots, one MGET per slot (redis-py's `mget_nonatomic`)."""
    if isinstance(client, LazyClusterClient | RedisCluster):
        values: list[bytes | None] = client.mget_nonatomic(list(keys))
        return values
    values = client.mget(list(keys))
    return values
