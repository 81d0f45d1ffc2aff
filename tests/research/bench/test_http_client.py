"""The measurements' HTTP client against the echo floor: the open loop keeps its rate and
schedule and counts errors by kind, its pool survives connections closed while idle, the closed
loop counts errors, and both speak every wire format."""

from __future__ import annotations

import asyncio
import socketserver
import threading

import numpy as np
import pytest

from research.bench.request_sets import request_set
from research.bench.targets import ECHO
from research.bench.wire_formats import WIRE_FORMATS
from research.http_client import ConnectionPool, closed_loop, encode_requests, open_loop
from research.service_process import ServiceProcess, free_port

OPEN_LOOP_RATE = 100.0
OPEN_LOOP_SECONDS = 2.0
RATE_TOLERANCE = 0.1
SCHEDULE_TOLERANCE_MS = 5.0


def test_open_loop_hits_its_rate_against_the_echo_floor(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray
) -> None:
    rng = np.random.default_rng(1)
    bodies = request_set(catalogue, 50, 20, 5, 100, rng).bodies
    url = f"{servers[ECHO].url}/prerank"
    run = open_loop(url, bodies, OPEN_LOOP_RATE, OPEN_LOOP_SECONDS, timeout=10, connections=32)
    assert run.sent == OPEN_LOOP_RATE * OPEN_LOOP_SECONDS and run.errors == 0
    assert run.offered_rate == pytest.approx(OPEN_LOOP_RATE, rel=RATE_TOLERANCE)
    assert run.completed_rate == pytest.approx(OPEN_LOOP_RATE, rel=RATE_TOLERANCE)
    assert np.all(run.latencies_ms > 0)
    assert np.median(np.abs(run.send_lag_ms)) < SCHEDULE_TOLERANCE_MS  # sent on schedule


def test_open_loop_counts_errors(servers: dict[str, ServiceProcess]) -> None:
    invalid = [b'{"user_id": 1, "candidates": ["x"]}']  # a 422
    url = f"{servers[ECHO].url}/prerank"
    run = open_loop(url, invalid, 50.0, 0.2, timeout=10, connections=4)
    assert run.sent == 10 and run.errors == 10 and run.error_kinds == {"422": 10}
    closed = open_loop(
        f"http://127.0.0.1:{free_port()}/prerank", invalid, 50.0, 0.2, timeout=2, connections=4
    )
    assert closed.errors == closed.sent == 10
    assert closed.error_kinds == {"ConnectionRefusedError": 10}


def test_the_pool_sends_again_on_a_connection_the_server_closed_while_idle() -> None:
    """A server that closes each connection after answering, without saying so, stands for one
    whose keep-alive timeout closed idle connections: no request may fail for it."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

    async def scenario() -> tuple[list[int], int]:
        accepted = 0

        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(parse_content_length(head))
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/prerank"
        pool = ConnectionPool("127.0.0.1", port, 4)
        statuses = [await pool.exchange(request) for request in encode_requests(url, [b"{}"] * 3)]
        pool.close()
        server.close()
        return statuses, accepted

    statuses, accepted = asyncio.run(scenario())
    assert statuses == [200, 200, 200] and accepted == 3


def parse_content_length(head: bytes) -> int:
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_closed_loop_counts_errors(servers: dict[str, ServiceProcess]) -> None:
    bodies = [b'{"user_id": 1, "candidates": ["x"]}', b'{"user_id": 1, "candidates": [1]}']
    run = closed_loop(f"{servers[ECHO].url}/prerank", bodies)
    assert run.errors == 1 and run.latencies_ms.size == 2


def test_both_loops_speak_every_wire_format(
    servers: dict[str, ServiceProcess], catalogue: np.ndarray
) -> None:
    """Each format's body with its Content-Type and Accept, its answer decoded: no errors. The
    same MessagePack bodies sent as JSON are 422s: the Content-Type is what the server reads."""
    requests = request_set(catalogue, 50, 6, 5, 100, np.random.default_rng(2))
    url = f"{servers[ECHO].url}/prerank"
    for wire in WIRE_FORMATS.values():
        bodies = requests.encoded(wire)
        closed = closed_loop(
            url, bodies, wire.headers, content_type=wire.content_type, decode=wire.decode
        )
        assert closed.errors == 0 and closed.latencies_ms.size == len(bodies), wire.name
        opened = open_loop(
            url,
            bodies,
            OPEN_LOOP_RATE,
            0.1,
            timeout=10,
            connections=4,
            headers=wire.headers,
            content_type=wire.content_type,
        )
        assert opened.errors == 0 and opened.sent == OPEN_LOOP_RATE * 0.1, wire.name
    msgpack_bodies = requests.encoded(WIRE_FORMATS["msgpack"])
    as_json = closed_loop(url, msgpack_bodies)
    assert as_json.errors == len(msgpack_bodies)


def test_the_closed_loop_reconnects_when_the_server_says_close() -> None:
    """An answer with `connection: close` ends its connection: the next request opens a new
    one instead of failing."""
    answer = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}"
    accepted = []

    class AnswerOnce(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            accepted.append(self.client_address)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += self.rfile.readline()
            self.rfile.read(parse_content_length(head))
            self.wfile.write(answer)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), AnswerOnce) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/prerank"
        run = closed_loop(url, [b"{}"] * 3)
        server.shutdown()
    assert run.errors == 0 and run.latencies_ms.size == 3 and len(accepted) == 3
