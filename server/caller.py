"""Who is asking: what rate limits and security events need to know about a request,
taken from it once so that the service layer never sees HTTP."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from .clientaddr import address_of
from .events import route_of

MAX_USER_AGENT = 256


@dataclass(frozen=True)
class Caller:
    ip: str
    user_agent: str | None = None
    route: str | None = None  # the matched route's path template

    @classmethod
    def of(cls, request: web.Request) -> Caller:
        user_agent = request.headers.get("User-Agent")
        return cls(
            address_of(request),
            user_agent[:MAX_USER_AGENT] if user_agent is not None else None,
            route_of(request),
        )
