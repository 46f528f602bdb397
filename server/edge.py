"""The HTTP edge: connections before and around the app, the same under one process and
under gunicorn workers.

- A request body must arrive within `server.body_timeout` of its headers: then the body
  read raises `BodyTimeout` (the middleware answers 408) and the connection closes.
  Headers themselves, and idle keep-alive connections, get KEEPALIVE_TIMEOUT (aiohttp's
  idle timer covers both).
- A client that closes the connection while its request is handled makes the body read
  raise `ClientDisconnected` (a quiet 400 nobody reads), never ConnectionResetError (an
  "unhandled error" traceback and a 500 in the log); mid-body, one short line is logged.
- At most `server.max_connections` connections per process (lowered to what the open-file
  limit leaves room for). At the cap, the oldest idle connection (or one whose body has
  stalled) is closed to admit the new one; when none can go, accepting pauses and new
  connections wait in the listen queue, served first-come as others close.
- Running out of file descriptors anyway pauses accepting briefly and logs one line per
  LOG_INTERVAL (asyncio's own accept loop logs a traceback per failed attempt).
- aiohttp's parser errors (oversized or too many headers, a malformed request line)
  answer `{"message", "code": "bad_request"}` with our Server header: never aiohttp's
  version, never the request's bytes.

aiohttp offers no setting for these, so `EdgeRunner` builds `EdgeServer` (a `web.Server`
whose connections are `EdgeRequestHandler`s), and `server.listener.EdgeSite` runs the
accept loop with asyncio's public `add_reader` and `connect_accepted_socket`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from .settings import ServerSettings

if TYPE_CHECKING:
    from .listener import EdgeSite

logger = logging.getLogger("auth.server")
KEEPALIVE_TIMEOUT = 75.0  # idle keep-alive connections and unfinished headers
RESERVED_FDS = 64  # descriptors kept for the database, key files, logs, hashing
LOG_INTERVAL = 10.0
FRESH_GRACE = 1.0  # at shutdown: how long a just-accepted connection may take to ask
DRAIN_STEP = 0.01
STALLED_AFTER = 1.0  # a body still incomplete this long may be closed at the cap
EDGE_HEADERS = {
    "Server": "auth-server",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _error_text(message: str) -> str:
    return json.dumps({"message": message, "code": "bad_request"})


class BodyTimeout(web.HTTPRequestTimeout):
    """Raised by the body read: the body did not arrive within `server.body_timeout`."""

    def __init__(self) -> None:
        super().__init__(
            text=_error_text("Request body not received in time"),
            content_type="application/json",
        )


class ClientDisconnected(web.HTTPBadRequest):
    """Raised by the body read: the client closed the connection. A 4xx, so that the
    middleware renders it quietly; nobody is left to read it."""

    def __init__(self) -> None:
        super().__init__(
            text=_error_text("Client closed the connection"),
            content_type="application/json",
        )


@dataclass(frozen=True)
class EdgeLimits:
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, server: ServerSettings) -> EdgeLimits:
        return cls(server.body_timeout, effective_max_connections(server))


def effective_max_connections(server: ServerSettings) -> int:
    """`server.max_connections`, lowered so that connections alone never exhaust the
    open-file limit (each takes one descriptor; RESERVED_FDS stay for the rest)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return server.max_connections
    return max(1, min(server.max_connections, soft - RESERVED_FDS))


class ThrottledLog:
    """One line per kind per `interval` at most, saying how many were left out: a flood
    of clients must not become a flood of log lines."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def __call__(self, kind: str, level: int, message: str, *args: object) -> None:
        now = asyncio.get_running_loop().time()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        self._last[kind] = now
        skipped = self._skipped.pop(kind, 0)
        if skipped:
            message += f" (and {skipped} more in the last {self._interval:g} s)"
        logger.log(level, message, *args)


class EdgeRequestHandler(RequestHandler):
    """aiohttp's connection protocol with a body deadline, quiet disconnects, and
    parser errors in the contract's shape."""

    def __init__(self, manager: EdgeServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.edge = manager
        self.opened = self._loop.time()
        self.busy_since: float | None = None  # a request is being handled since then
        self.asking_since: float | None = None  # bytes of a next request came then
        self.served = 0
        self._body: Any = None  # the body (payload) of the request being handled
        self._deadline: asyncio.TimerHandle | None = None
        self._peer = "unknown"
        self._evicted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._peer = str(peer[0])
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.busy_since is None and self.asking_since is None:
            self.asking_since = self._loop.time()
        super().data_received(data)

    def request_started(self, payload: Any) -> None:
        """Called as aiohttp hands a request to the app: arm the body deadline unless
        the body is already complete (or absent), which is the common case."""
        self.busy_since = self._loop.time()
        self.asking_since = None
        self._body = payload
        if not payload.is_eof():
            self._deadline = self._loop.call_later(
                self.edge.limits.body_timeout, self._body_overdue, payload
            )

    def _body_overdue(self, payload: Any) -> None:
        self._deadline = None
        if payload.is_eof() or self.busy_since is None:
            return  # complete in time, or answered already (aiohttp's linger is bounded)
        self.edge.log(
            "body_timeout",
            logging.INFO,
            "request body from %s not received within %g s: 408, connection closed",
            self._peer,
            self.edge.limits.body_timeout,
        )
        self.close()  # no further request on this connection; its bytes are ignored
        payload.set_exception(BodyTimeout())
        payload.feed_eof()  # nothing left to drain after the answer

    def _request_done(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._body = None
        self.busy_since = None
        self.served += 1

    @property
    def idle(self) -> bool:
        """Between requests with nothing received: closing it loses nothing."""
        return self.busy_since is None and self.asking_since is None

    def stalled(self, now: float) -> bool:
        """A request head, or a body, unfinished after STALLED_AFTER seconds."""
        if self.busy_since is None:
            started = self.asking_since
            return started is not None and now - started > STALLED_AFTER
        body = self._body
        return (
            body is not None
            and not body.is_eof()
            and now - self.busy_since > STALLED_AFTER
        )

    def evict(self) -> None:
        """Close to make room; a handler waiting for the body ends quietly."""
        self._evicted = True
        if self._body is not None and self.busy_since is not None:
            self._body.set_exception(ClientDisconnected())
        self.force_close()

    async def finish_response(
        self, request: Any, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._request_done()

    def connection_lost(self, exc: BaseException | None) -> None:
        """A body read after the client left raises ClientDisconnected, not aiohttp's
        ConnectionResetError (which the middleware would log as a server error)."""
        body = self._body if self.busy_since is not None else None
        if body is not None and self._manager is not None:
            if not body.is_eof() and not self._evicted:
                self.edge.log(
                    "disconnect",
                    logging.INFO,
                    "client %s closed the connection before sending the whole body",
                    self._peer,
                )
            body.set_exception(ClientDisconnected())  # wakes a read in progress
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)
        if body is not None:  # aiohttp set its own: later reads must see ours too
            body.set_exception(ClientDisconnected())

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request its parser refused (or to an error that escaped
        the app): our JSON shape and headers, no version, no echo, one short log line."""
        if isinstance(exc, HttpProcessingError):
            if 400 <= exc.code < 500:
                status = exc.code
            self.edge.log(
                "malformed",
                logging.WARNING,
                "malformed request from %s: %s (%s)",
                self._peer,
                type(exc).__name__,
                status,
            )
            text = _parser_message(exc)
        else:
            if exc is not None:
                self.log_exception("Error handling request", exc_info=exc)
            text = HTTPStatus(status).phrase
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send another")
        body = {"message": text, "code": _code(status)}
        response = web.json_response(body, status=status, headers=EDGE_HEADERS)
        response.force_close()
        return response


def _parser_message(exc: HttpProcessingError) -> str:
    if isinstance(exc, LineTooLong):
        return "Request line or header too long"
    name = type(exc).__name__
    if "Header" in name or "header" in str(exc.message)[:40]:
        return "Malformed or too many request headers"
    if name in ("BadStatusLine", "BadHttpMethod", "InvalidURLError"):
        return "Malformed request line"
    return "Malformed request"


def _code(status: int) -> str:
    if status == 413:
        return "payload_too_large"
    return "bad_request" if status < 500 else "internal_error"


class EdgeServer(web.Server):
    """aiohttp's connection factory, counting connections for the cap and closing the
    oldest idle (or stalled) one to admit a new one."""

    def __init__(self, *args: Any, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.log = ThrottledLog()
        self._open: dict[EdgeRequestHandler, None] = {}  # oldest first
        self._pending: set[int] = set()  # descriptors accepted, not connected yet
        self._sites: list[EdgeSite] = []  # to wake when a connection closes
        app_factory = self.request_factory

        def request_factory(
            message: Any, payload: Any, protocol: Any, writer: Any, task: Any
        ) -> web.BaseRequest:
            request = app_factory(message, payload, protocol, writer, task)
            protocol.request_started(payload)
            return request

        self.request_factory = request_factory

    @classmethod
    def adopt(cls, server: web.Server, limits: EdgeLimits) -> EdgeServer:
        """The same server as `server` (the app's handler, request factory and handler
        options), with the edge's connections."""
        return cls(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            limits=limits,
            **server._kwargs,
        )

    def __call__(self) -> EdgeRequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: Any) -> None:
        super().connection_made(handler, transport)
        self._open[handler] = None  # type: ignore[index]
        sock = transport.get_extra_info("socket")
        self._pending.discard(sock.fileno() if sock is not None else -1)

    def connection_lost(
        self, handler: RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        if handler in self._open:  # not already dropped by make_room
            del self._open[handler]  # type: ignore[arg-type]
            self._loop.call_soon(self._wake)

    @property
    def open_connections(self) -> int:
        return len(self._open) + len(self._pending)

    def room(self) -> bool:
        return self.open_connections < self.limits.max_connections

    def make_room(self) -> bool:
        """Close the oldest idle connection, else the oldest stalled one: True if one
        was closed (it stops counting at once)."""
        now = self._loop.time()
        victim = next((h for h in self._open if h.idle), None)
        kind = "idle"
        if victim is None:
            victim = next((h for h in self._open if h.stalled(now)), None)
            kind = "stalled"
        if victim is None:
            return False
        del self._open[victim]
        self.log(
            "evicted",
            logging.INFO,
            "connection cap (%d) reached: closed the oldest %s connection",
            self.limits.max_connections,
            kind,
        )
        victim.evict()
        return True

    def accept(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        fd = conn.fileno()
        self._pending.add(fd)
        task = self._loop.create_task(self._loop.connect_accepted_socket(self, conn))
        task.add_done_callback(lambda done: self._connected(done, conn, fd))

    def _connected(self, task: asyncio.Task[Any], conn: socket.socket, fd: int) -> None:
        if task.cancelled() or task.exception() is not None:
            self._pending.discard(fd)
            conn.close()
            self._wake()

    def add_site(self, site: EdgeSite) -> None:
        self._sites.append(site)

    def remove_site(self, site: EdgeSite) -> None:
        if site in self._sites:
            self._sites.remove(site)

    def _wake(self) -> None:
        for site in self._sites:
            site.resume()

    def pre_shutdown(self) -> None:
        """Deferred to `shutdown`: first give fresh connections time to ask."""

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Stop gracefully: wait (up to FRESH_GRACE) for requests being handled and for
        connections accepted just before the listener closed to send theirs, then close
        the idle ones and wait for the rest as aiohttp does."""
        fresh_since = self._loop.time() - FRESH_GRACE
        for _ in range(round(FRESH_GRACE / DRAIN_STEP)):
            if not any(h.busy_since is not None for h in self._open) and not any(
                h.served == 0 and h.opened > fresh_since for h in self._open
            ):
                break
            await asyncio.sleep(DRAIN_STEP)
        super().pre_shutdown()
        await super().shutdown(timeout)


class EdgeRunner(web.AppRunner):
    """`web.AppRunner` serving through `EdgeServer`, with our keep-alive timeout and no
    access log."""

    __slots__ = ("_limits",)

    def __init__(self, app: web.Application, limits: EdgeLimits, **kwargs: Any) -> None:
        kwargs.setdefault("access_log", None)
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT)
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        return EdgeServer.adopt(await super()._make_server(), self._limits)
