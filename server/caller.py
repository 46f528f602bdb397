"""Who is asking: what rate limits and security events need to know about a request,
taken from it once so that the service layer never sees HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from .clientaddr import address_of, client_key, rate_limit_key
from .events import MAX_USER_AGENT, route_of


@dataclass(frozen=True)
class Caller:
    ip: str  # canonical: what the log shows
    user_agent: str | None = None
    route: str | None = None  # the matched route's path template
    # What per-address limits count: `ip`, or its IPv6 network of
    # `ratelimit.ipv6_prefix` bits. Derived from `ip` (a /64) when not given.
    limit_key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.limit_key:
            object.__setattr__(self, "limit_key", rate_limit_key(self.ip))

    @classmethod
    def of(cls, request: web.Request) -> Caller:
        user_agent = request.headers.get("User-Agent")
        return cls(
            address_of(request),
            user_agent[:MAX_USER_AGENT] if user_agent is not None else None,
            route_of(request),
            client_key(request),
        )
