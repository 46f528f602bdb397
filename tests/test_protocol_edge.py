"""The HTTP edge (server/edge.py, server/listener.py), served in-process on a real socket as `run.py` serves:
slow bodies get 408, a client leaving mid-body leaves one short log line, the connection
cap admits new clients first-come, aiohttp's parser errors answer in the contract's JSON
without aiohttp's version or the request's bytes, and running out of descriptors logs one
line per interval."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import resource
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from server import create_app
from server.edge import EdgeLimits, EdgeRequestHandler, EdgeRunner, EdgeServer
from server.listener import ACCEPT_RETRY, EdgeSite, listen
from tests.conftest import make_settings
from tests.server_output import Output
from tests.serverproc import ServerProcess, server_env

SAFETY = 10.0  # seconds: a bound on every wait, so a broken server fails, never hangs


class Edge:
    def __init__(self, runner: EdgeRunner, site: EdgeSite) -> None:
        self.runner, self.site = runner, site
        self.port = site.sock.getsockname()[1]

    @property
    def server(self) -> EdgeServer:
        server = self.runner.server
        assert isinstance(server, EdgeServer)
        return server

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@asynccontextmanager
async def serving(
    tmp_path: Path, body_timeout: float = 30.0, max_connections: int = 100
) -> AsyncIterator[Edge]:
    app = create_app(make_settings(tmp_path))
    runner = EdgeRunner(app, EdgeLimits(body_timeout, max_connections))
    await runner.setup()
    (sock,) = listen("127.0.0.1", 0)
    site = EdgeSite(runner, sock)
    await site.start()
    try:
        yield Edge(runner, site)
    finally:
        await runner.cleanup()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    """One response up to the end of the connection: status, headers, body."""
    raw = await asyncio.wait_for(reader.read(), SAFETY)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def request_head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(int(SAFETY / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def server_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(("auth", "aiohttp"))]


async def test_the_edge_is_what_serves(tmp_path: Path) -> None:
    """aiohttp 3.14's classes are extended, not replaced: check they are in use."""
    async with serving(tmp_path) as edge:
        reader, writer = await edge.connect()
        writer.write(
            b"GET /api/test/all HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        status, headers, body = await read_response(reader)
        writer.close()
        assert (status, body) == (200, b"Public Content.")
        assert headers["Server"] == "auth-server"
        assert type(edge.server) is EdgeServer
        assert EdgeRequestHandler.handle_error is not None


async def test_a_body_that_does_not_arrive_gets_408_and_a_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serving(tmp_path, body_timeout=0.3) as edge:
        reader, writer = await edge.connect()
        writer.write(request_head("/api/auth/signin", 16000) + b'{"use')
        await writer.drain()
        status, headers, body = await read_response(reader)  # ends: closed by us
        writer.close()
    assert status == 408
    assert json.loads(body) == {"message": "Request Timeout", "code": "bad_request"}
    assert headers["Server"] == "auth-server"
    messages = [r.getMessage() for r in server_lines(caplog)]
    assert messages == [
        "request body from 127.0.0.1 not received within 0.3 s: 408, connection closed"
    ]
    assert not any(r.exc_info for r in caplog.records)


async def test_a_body_that_arrives_in_time_is_served(tmp_path: Path) -> None:
    async with serving(tmp_path, body_timeout=5) as edge:
        reader, writer = await edge.connect()
        body = b'{"username": "nobody", "password": "wrong password"}'
        writer.write(
            request_head("/api/auth/signin", len(body), "Connection: close\r\n")
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # the body comes later, but well in time
        writer.write(body)
        status, _, answer = await read_response(reader)
        writer.close()
    assert (status, json.loads(answer)["code"]) == (401, "invalid_credentials")


async def test_a_client_leaving_mid_body_leaves_one_short_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(tmp_path) as edge:
        _, writer = await edge.connect()
        writer.write(request_head("/api/auth/signup", 500) + b'{"username": "al')
        await writer.drain()
        await eventually(lambda: any(h.busy_since for h in edge.server._open))
        writer.transport.abort()  # reset, as a client that crashed
        await eventually(lambda: not edge.server._open)
        await asyncio.sleep(0.05)  # the handler has seen the end of its body
    records = [r for r in server_lines(caplog) if r.levelno >= logging.INFO]
    assert [r.getMessage() for r in records] == [
        "client 127.0.0.1 closed the connection before sending the whole body"
    ]
    assert not any(r.exc_info for r in caplog.records)
    assert not any("unhandled" in r.getMessage() for r in caplog.records)


async def test_at_the_cap_the_oldest_idle_connection_makes_room(tmp_path: Path) -> None:
    async with serving(tmp_path, max_connections=2) as edge:
        first = await edge.connect()
        await eventually(lambda: edge.server.open_connections == 1)
        second = await edge.connect()
        await eventually(lambda: edge.server.open_connections == 2)
        reader, writer = await edge.connect()
        writer.write(
            b"GET /api/test/all HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"Public Content.")
        assert await asyncio.wait_for(first[0].read(), SAFETY) == b""  # closed for it
        assert not second[0].at_eof()
        for _, w in (first, second, (reader, writer)):
            w.close()


async def test_at_the_cap_with_every_connection_busy_new_ones_wait_their_turn(
    tmp_path: Path,
) -> None:
    """Two connections hold the cap with unfinished bodies: two more clients wait in the
    listen queue (never more than two accepted), then are served in turn."""
    async with serving(tmp_path, body_timeout=0.5, max_connections=2) as edge:
        stalled = []
        for _ in range(2):
            reader, writer = await edge.connect()
            writer.write(request_head("/api/auth/signin", 100) + b"{")
            stalled.append((reader, writer))
        await eventually(
            lambda: sum(h.busy_since is not None for h in edge.server._open) == 2
        )
        waiting = [await edge.connect() for _ in range(2)]
        for _, writer in waiting:
            writer.write(
                b"GET /api/test/all HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
        await asyncio.sleep(0.2)
        assert edge.server.open_connections == 2  # the newcomers are not accepted yet
        assert [(await read_response(r))[0] for r, _ in stalled] == [408, 408]
        answers = [await read_response(r) for r, _ in waiting]
        assert [(s, b) for s, _, b in answers] == [(200, b"Public Content.")] * 2
        for _, writer in stalled + waiting:
            writer.close()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Secret-Echo: " + b"A" * 9000 + b"\r\n\r\n",
            "Request line or header too long",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: secret-echo\r\n" % n for n in range(200))
            + b"\r\n",
            "Malformed or too many request headers",
        ),
        (b"SECRET-ECHO /\x00 HTTP/9\r\n\r\n", "Malformed request line"),
        (
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
            "Request line or header too long",
        ),
    ],
)
async def test_parser_errors_answer_in_the_contract_shape(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, raw: bytes, message: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(tmp_path) as edge:
        reader, writer = await edge.connect()
        writer.write(raw)
        status, headers, body = await read_response(reader)
        writer.close()
    assert status == 400
    assert json.loads(body) == {"message": message, "code": "bad_request"}
    assert headers["Server"] == "auth-server"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    whole = json.dumps(headers).encode() + body
    assert b"aiohttp" not in whole.lower() and b"python" not in whole.lower()
    assert b"SECRET" not in whole.upper() and b"AAAA" not in whole
    lines = [r for r in server_lines(caplog) if r.levelno >= logging.INFO]
    assert len(lines) == 1 and lines[0].getMessage().startswith(
        "malformed request from 127.0.0.1: "
    )
    assert not any(r.exc_info for r in caplog.records)


class _Exhausted:
    """A listening socket whose accept() fails as when the open-file limit is hit."""

    def __init__(self, real: socket.socket) -> None:
        self.real, self.attempts = real, 0

    def fileno(self) -> int:
        return self.real.fileno()

    def accept(self) -> Any:
        self.attempts += 1
        raise OSError(errno.EMFILE, "Too many open files")

    def close(self) -> None:
        self.real.close()


async def test_running_out_of_descriptors_is_one_line_per_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each refused accept pauses accepting for ACCEPT_RETRY seconds; however many
    times that happens, one line per interval reaches the log."""
    caplog.set_level(logging.INFO)
    async with serving(tmp_path) as edge:
        clients = [await edge.connect() for _ in range(3)]
        await eventually(lambda: edge.server.open_connections == 3)
        edge.site._pause()  # the loop's own wake-ups would add attempts
        exhausted = _Exhausted(edge.site.sock)
        edge.site.sock = exhausted  # type: ignore[assignment]
        for _ in range(20):
            edge.site._accept()
        assert exhausted.attempts == 20  # one try per wake-up: no busy loop
        assert edge.site._retry is not None and not edge.site._reading
        edge.site.sock = exhausted.real
        edge.site.resume()
        for _, writer in clients:
            writer.close()
    lines = [r.getMessage() for r in server_lines(caplog) if r.levelno >= logging.INFO]
    assert lines == [
        "cannot accept connections: Too many open files (3 open here, open-file limit "
        f"{__import__('resource').getrlimit(__import__('resource').RLIMIT_NOFILE)[0]}): "
        f"accepting again in {ACCEPT_RETRY:g} s"
    ]


def test_a_server_at_its_open_file_limit_logs_one_line_and_recovers(
    tmp_path: Path,
) -> None:
    """A real process whose open-file limit is lowered under it: 150 clients exhaust
    it; the log gets one line, not one per attempt, and once clients leave, new ones
    are served again."""
    with ServerProcess(server_env(tmp_path)) as server:
        output = Output(server.process.stdout)
        soft, hard = resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE, (96, hard))
        try:
            clients = [
                socket.create_connection(("127.0.0.1", server.port)) for _ in range(150)
            ]
            deadline = time.monotonic() + SAFETY
            while (
                "Too many open files" not in output.text and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            time.sleep(1.5)  # several ACCEPT_RETRY pauses: still one line
            for client in clients:
                client.close()
            assert server.request("GET", "/api/test/all") == (200, "Public Content.")
        finally:
            resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE, (soft, hard))
    lines = [line for line in output.lines if "open files" in line]
    assert len(lines) == 1, lines
    assert "cannot accept connections: Too many open files" in lines[0]
    assert "Traceback" not in output.text
