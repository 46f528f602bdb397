"""CORS for browser front ends on other origins (the seeds' React/Vue/Angular apps run on
their own port). Off unless `server.cors_origins` lists origins.

- An origin named in the list may also send credentials: its answers carry
  `Access-Control-Allow-Credentials: true`, so a page there can use cookie mode with
  `fetch(..., {credentials: "include"})` and the `X-CSRF-Token` header.
- `*` lets any other origin read the answers of body mode (tokens in headers and
  bodies), never with credentials: a browser then neither sends the session cookie nor
  lets the page read an answer that set one. Cookie mode's origin check ignores `*` too.

Our own middleware rather than aiohttp-cors: it needs no registration per route (routes
move with a host's prefixes), answers preflights of every path, puts the headers on the
error answers of the auth middleware too, costs nothing on requests without an Origin,
and uses no string app keys (aiohttp 3.14 warns on those).
"""

from __future__ import annotations

from aiohttp import hdrs, web

from .csrf import parse_origin
from .errors import Handler

ALLOWED_HEADERS = "Content-Type, Authorization, x-access-token, X-CSRF-Token"
ALLOWED_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
EXPOSED_HEADERS = "Retry-After, WWW-Authenticate"
PREFLIGHT_MAX_AGE = "600"


def cors_middleware(origins: tuple[str, ...]) -> web.middleware:
    allow_any = "*" in origins
    named = frozenset(
        parsed for parsed in map(parse_origin, origins) if parsed is not None
    )

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None:
            return await handler(request)
        credentials = parse_origin(origin) in named
        if not (credentials or allow_any):
            return await handler(request)
        if (
            request.method == "OPTIONS"
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        ):
            response: web.StreamResponse = web.Response(status=204)
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = ALLOWED_METHODS
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ALLOWED_HEADERS
            response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = PREFLIGHT_MAX_AGE
        else:
            response = await handler(request)
        headers = response.headers
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        if credentials:
            headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
        headers.add(hdrs.VARY, "Origin")
        return response

    return cors
