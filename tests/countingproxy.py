"""An HTTP proxy in front of a live server, run in the test's event loop: it records
every exchange, so a test counts refresh requests on the wire (a client bug cannot hide
behind the server's grace rules), and a test may hold a request or answer it itself."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

FORWARDED_REQUEST = {"authorization", "x-access-token", "content-type"}
FORWARDED_RESPONSE = {"content-type", "www-authenticate", "retry-after"}


@dataclass
class Exchange:
    """One request as the proxy saw it, and the answer it gave back."""

    method: str
    path: str
    bearer: str | None
    body: bytes
    status: int = 0
    answer: bytes = b""
    tags: set[str] = field(default_factory=set)

    def json(self) -> Any:
        return json.loads(self.body)

    def answer_json(self) -> Any:
        return json.loads(self.answer)


Hook = Callable[[Exchange], Awaitable[web.Response | None]]


class CountingProxy:
    """Forwards everything to `upstream`. `hook`, when set, sees each request before it
    is forwarded: it may wait (to line requests up) or return a response of its own."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.exchanges: list[Exchange] = []
        self.hook: Hook | None = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        self.app.cleanup_ctx.append(self._client)

    def to(self, method: str, path: str) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == method and e.path == path]

    def refreshes(self) -> list[Exchange]:
        return self.to("POST", "/api/auth/refreshtoken")

    async def _client(self, app: web.Application) -> AsyncIterator[None]:
        self._session = aiohttp.ClientSession()
        yield
        await self._session.close()

    async def _handle(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        bearer = authorization.removeprefix("Bearer ") if authorization else None
        exchange = Exchange(request.method, request.path, bearer, await request.read())
        self.exchanges.append(exchange)
        own = await self.hook(exchange) if self.hook is not None else None
        if own is not None:
            exchange.status, exchange.answer = own.status, own.body
            return own
        headers = {
            k: v for k, v in request.headers.items() if k.lower() in FORWARDED_REQUEST
        }
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=exchange.body or None,
        ) as upstream:
            exchange.status, exchange.answer = upstream.status, await upstream.read()
            kept = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() in FORWARDED_RESPONSE
            }
            return web.Response(
                status=upstream.status, body=exchange.answer, headers=kept
            )
