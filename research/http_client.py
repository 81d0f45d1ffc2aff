"""The measurements' HTTP client (Locust aside): `/prerank` requests with pre-encoded bodies, either
closed loop (one connection, one request at a time) or open loop (a fixed arrival rate over a pool
of keep-alive connections). Both send the same HTTP/1.1 bytes and read answers the same way; the
bytes are written by hand rather than by http.client or httpx so that the client's own cost per
request stays small next to the server's."""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import orjson
import uvloop

from prerank_contract.http import JSON_TYPE

REQUEST_TIMEOUT_SECONDS = 30.0
PERCENTILES = (50, 95, 99)
SECONDS_TO_MS = 1000.0
HTTP_OK = 200
HTTP_PORT = 80
HEAD_END = b"\r\n\r\n"
MAX_HEAD_LINE = 65_536  # bytes of one status or header line

AnswerDecoder = Callable[[bytes], Mapping[str, Any]]
"""A 200 answer's bytes -> its fields (orjson.loads for JSON answers, msgpack.unpackb for
MessagePack ones)."""


def encode_requests(
    url: str,
    bodies: Sequence[bytes],
    headers: Mapping[str, str] | None = None,
    content_type: str = JSON_TYPE,
) -> list[bytes]:
    """Whole HTTP/1.1 POST requests of `bodies` (of `content_type`) to `url`, encoded before any
    is timed."""
    parts = urlsplit(url)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return [
        (
            f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
        ).encode()
        + body
        for body in bodies
    ]


def parse_response_head(head: bytes) -> tuple[int, int, bool]:
    """An HTTP/1.1 status line and headers -> (status, content length, keep-alive)."""
    lines = head.lower().split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = dict(line.split(b":", 1) for line in lines[1:] if b":" in line)
    if b"content-length" not in headers:
        raise ValueError("an answer without content-length")
    keep_alive = headers.get(b"connection", b"").strip() != b"close"
    return status, int(headers[b"content-length"]), keep_alive


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or HTTP_PORT


# ---------------------------------------------------------------- closed loop


@dataclass(frozen=True)
class ClosedLoopRun:
    """What one closed-loop pass measured: per-request latencies and the pass's wall time."""

    latencies_ms: np.ndarray  # [requests] float64, in sending order
    wall_seconds: float
    errors: int  # answers other than 200, and requests that got no answer
    degraded: int  # 200 answers flagged degraded
    degraded_reasons: dict[str, int]  # reason -> answers degraded for it, e.g. {"deadline": 3}


def read_answer(stream: io.BufferedReader) -> tuple[int, bytes, bool]:
    """One whole answer from a blocking stream -> (status, body, keep-alive)."""
    head = [stream.readline(MAX_HEAD_LINE)]
    while head[-1] not in (b"\r\n", b""):
        head.append(stream.readline(MAX_HEAD_LINE))
    if not head[-1]:
        raise ConnectionError("closed before a whole answer head")
    status, length, keep_alive = parse_response_head(b"".join(head))
    body = stream.read(length)
    if len(body) < length:
        raise ConnectionError("closed before a whole answer body")
    return status, body, keep_alive


def closed_loop(
    url: str,
    bodies: Sequence[bytes],
    headers: Mapping[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
    *,
    content_type: str = JSON_TYPE,
    decode: AnswerDecoder = orjson.loads,
) -> ClosedLoopRun:
    """POST each body (of `content_type`) to `url` in turn on one persistent connection, the next
    one sent when the previous answer is read; a connection lost or closed by the server is
    opened again before the next request. Each 200 answer is read by `decode` (after its time is
    taken) for its degraded flags."""
    address = host_and_port(url)
    requests = encode_requests(url, bodies, headers, content_type)
    latencies = np.zeros(len(requests), dtype=np.float64)
    errors = degraded = 0
    reasons: Counter[str] = Counter()
    connection = socket.create_connection(address, timeout)  # outside the timed requests
    stream = connection.makefile("rb")
    started = time.perf_counter()
    try:
        for index, request in enumerate(requests):
            sent = time.perf_counter()
            try:
                if connection.fileno() < 0:
                    connection = socket.create_connection(address, timeout)
                    stream = connection.makefile("rb")
                connection.sendall(request)
                status, answer, keep_alive = read_answer(stream)
            except (OSError, ValueError):  # refused, reset, timed out, malformed
                latencies[index] = (time.perf_counter() - sent) * SECONDS_TO_MS
                errors += 1
                stream.close()
                connection.close()  # the next request reconnects
                continue
            latencies[index] = (time.perf_counter() - sent) * SECONDS_TO_MS
            if not keep_alive:
                stream.close()
                connection.close()
            if status != HTTP_OK:
                errors += 1
            else:
                parsed = decode(answer)
                degraded += bool(parsed.get("degraded"))
                reasons.update(parsed.get("degraded_reasons", ()))
    finally:
        wall = time.perf_counter() - started
        stream.close()
        connection.close()
    return ClosedLoopRun(latencies, wall, errors, degraded, dict(reasons))


# ---------------------------------------------------------------- open loop


@dataclass(frozen=True)
class OpenLoopRun:
    """One open-loop run: requests sent on a fixed schedule, whatever the answers do."""

    rate: float  # scheduled requests/s
    seconds: float  # scheduled duration
    latencies_ms: np.ndarray  # [sent]: from the scheduled send time (or an earlier send) to the
    # answer read
    send_lag_ms: np.ndarray  # [sent]: how late the generator sent each request (< 0: early)
    errors: int  # answers other than 200, timeouts, refused connections
    error_kinds: dict[str, int]  # status code or exception name -> count
    send_seconds: float  # first to last actual send
    wall_seconds: float  # first scheduled send to the last answer

    @property
    def sent(self) -> int:
        return int(self.latencies_ms.size)

    @property
    def offered_rate(self) -> float:
        """Requests/s the generator actually sent."""
        return (self.sent - 1) / self.send_seconds if self.sent > 1 else 0.0

    @property
    def completed_rate(self) -> float:
        """200 answers per second of the run."""
        return (self.sent - self.errors) / self.wall_seconds


class StaleConnectionError(ConnectionError):
    """A connection closed by the server before any byte of the answer came back."""


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to one server for the open loop, on asyncio streams.

    A request takes the most recently used idle connection, or opens one while fewer than
    `limit` are in use, or waits for one in arrival order. An idle connection the server has
    closed meanwhile (uvicorn closes keep-alive connections idle for 5 s) is dropped and the
    request goes on the next one. Hand-written rather than httpx: once a backlog forms, httpx's
    pool spends time per waiting request on every request, so the generator, not the server,
    would fall behind."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self.slots = asyncio.Semaphore(limit)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def exchange(self, request: bytes) -> int:
        """Send one whole HTTP request, read the whole answer; its status code."""
        async with self.slots:
            while self.idle:
                reader, writer = self.idle.pop()
                if reader.at_eof() or writer.is_closing():
                    writer.close()
                    continue
                try:
                    return await self._round_trip(reader, writer, request)
                except StaleConnectionError:
                    continue  # closed while idle: the request was not read, send it again
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return await self._round_trip(reader, writer, request)

    async def _round_trip(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> int:
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(HEAD_END)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise
                raise StaleConnectionError("closed before answering") from exc
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise StaleConnectionError("reset before answering") from exc
            status, length, keep_alive = parse_response_head(head)
            await reader.readexactly(length)
        except BaseException:  # an error, a timeout: the connection's state is unknown
            writer.close()
            raise
        if keep_alive:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def open_loop_async(
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    seconds: float,
    timeout: float,
    connections: int,
    headers: Mapping[str, str] | None = None,
    content_type: str = JSON_TYPE,
) -> OpenLoopRun:
    """POST bodies (cycled, of `content_type`, with `headers`) at `rate` per second for
    `seconds`: request i is due at
    start + i / rate and sent then on a pooled connection, whatever earlier answers do; it is
    timed from when it was due, so a late send or a wait for a connection counts against the
    latency (no coordinated omission)."""
    count = max(1, round(rate * seconds))
    requests = encode_requests(url, bodies, headers, content_type)
    pool = ConnectionPool(*host_and_port(url), connections)
    latencies = np.zeros(count, dtype=np.float64)
    lags = np.zeros(count, dtype=np.float64)
    sent_at = np.zeros(count, dtype=np.float64)
    error_kinds: Counter[str] = Counter()

    async def send(index: int, due: float) -> None:
        sent_at[index] = time.perf_counter()
        lags[index] = sent_at[index] - due
        try:
            exchange = pool.exchange(requests[index % len(requests)])
            status = await asyncio.wait_for(exchange, timeout)
            if status != HTTP_OK:
                error_kinds[str(status)] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            error_kinds[type(exc).__name__] += 1  # refused, reset, timed out, malformed
        # uvloop's timers may fire up to a millisecond early: an early request is timed from
        # when it was sent, a late one from when it was due
        latencies[index] = time.perf_counter() - min(due, sent_at[index])

    tasks = []
    start = time.perf_counter()
    try:
        for index in range(count):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(index, due)))
        await asyncio.gather(*tasks)
    finally:
        pool.close()
    ended = time.perf_counter()
    return OpenLoopRun(
        rate=rate,
        seconds=seconds,
        latencies_ms=latencies * SECONDS_TO_MS,
        send_lag_ms=lags * SECONDS_TO_MS,
        errors=sum(error_kinds.values()),
        error_kinds=dict(error_kinds),
        send_seconds=float(sent_at.max() - sent_at.min()),
        wall_seconds=ended - start,
    )


def open_loop(
    url: str,
    bodies: Sequence[bytes],
    rate: float,
    seconds: float,
    *,
    timeout: float,
    connections: int,
    headers: Mapping[str, str] | None = None,
    content_type: str = JSON_TYPE,
) -> OpenLoopRun:
    """`open_loop_async` on its own uvloop event loop (the loop uvicorn runs on)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(
            open_loop_async(url, bodies, rate, seconds, timeout, connections, headers, content_type)
        )
