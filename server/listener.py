"""Listening sockets and our own accept loop (asyncio's public `add_reader` and
`connect_accepted_socket`), for the single process and for gunicorn's workers alike.

asyncio's accept loop cannot pause, so it can neither hold a connection cap nor stay quiet
when descriptors run out (it logs a traceback per failed accept, thousands a second). Ours
pauses at the cap (new connections wait in the kernel's listen queue, first come first
served, once `EdgeServer.make_room` found nothing to close) and for ACCEPT_RETRY seconds
after EMFILE, logging one line per interval.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import select
import socket
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from .edge import EdgeServer

LISTEN_BACKLOG = 1024
ACCEPT_BURST = 64  # connections accepted per wake-up of the listening socket
ACCEPT_RETRY = 0.5  # seconds before accepting again after running out of descriptors
RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _Listener:
    """What `web.BaseSite.stop` closes and `BaseRunner.addresses` lists."""

    def __init__(self, site: EdgeSite) -> None:
        self._site = site

    @property
    def sockets(self) -> list[socket.socket]:
        return [self._site.sock]

    def close(self) -> None:
        self._site.close()


class EdgeSite(web.BaseSite):
    """A listening socket (ours, or one gunicorn's arbiter shares) accepted by our own
    loop: it pauses at the connection cap and when descriptors run out."""

    __slots__ = ("_closed", "_edge", "_reading", "_retry", "sock")

    def __init__(self, runner: web.BaseRunner, sock: socket.socket) -> None:
        super().__init__(runner, backlog=LISTEN_BACKLOG)
        self.sock = sock
        self._edge: EdgeServer | None = None
        self._reading = False
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        host, port = self.sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if not isinstance(server, EdgeServer):
            raise TypeError("EdgeSite needs an EdgeRunner")
        self._edge = server
        self.sock.setblocking(False)
        self._server = _Listener(self)  # type: ignore[assignment]
        server.add_site(self)
        self.resume()

    def resume(self) -> None:
        if self._closed or self._reading:
            return
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._accept)
        self._reading = True

    def _pause(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self._reading = False

    def close(self) -> None:
        self._pause()
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._edge is not None:
            self._edge.remove_site(self)
        self.sock.close()

    def _accept(self) -> None:
        edge = self._edge
        assert edge is not None
        for _ in range(ACCEPT_BURST):
            if edge.room():
                pass
            elif not _waiting(self.sock):
                return  # nobody asks for now; the next arrival wakes us again
            elif not edge.make_room():
                edge.log(
                    "cap",
                    logging.WARNING,
                    "connection cap (%d) reached with every connection busy: new "
                    "connections wait in the listen queue",
                    edge.limits.max_connections,
                )
                self._pause()  # resumed when a connection closes
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._accept_failed(edge, exc)
                return
            edge.accept(conn)

    def _accept_failed(self, edge: EdgeServer, exc: OSError) -> None:
        if exc.errno in RESOURCE_ERRNOS:
            edge.log(
                "descriptors",
                logging.ERROR,
                "cannot accept connections: %s (%d open here, open-file limit %s): "
                "accepting again in %g s",
                exc.strerror,
                edge.open_connections,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                ACCEPT_RETRY,
            )
        else:
            edge.log("accept", logging.ERROR, "accept() failed: %s", exc)
        self._pause()
        self._retry = asyncio.get_running_loop().call_later(ACCEPT_RETRY, self.resume)


def _waiting(sock: socket.socket) -> bool:
    """Whether a connection waits in the listen queue (checked only at the cap, so that
    no connection is closed for one that is not there)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound, listening sockets for `host:port` (every address it resolves to, as
    asyncio's create_server does). Raises OSError when the address is not ours or taken."""
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in _unique(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _unique(infos: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    seen: set[tuple[Any, ...]] = set()
    unique = []
    for info in infos:
        key = (info[0], info[4])
        if key not in seen:
            seen.add(key)
            unique.append(info)
    return unique
