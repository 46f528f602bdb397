"""CORS for browser front ends on other origins (the seeds' React/Vue/Angular apps run on
their own port). Off unless `server.cors_origins` lists origins. `*` allows any origin
to send tokens in headers and bodies, never with credentials; an origin listed by name
may also send cookies (`Access-Control-Allow-Credentials`), as the wpcodevo front end
does."""

from __future__ import annotations

from aiohttp import web

from .errors import Handler

ALLOWED_HEADERS = "Content-Type, Authorization, x-access-token"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
PREFLIGHT_MAX_AGE = "600"


def cors_middleware(origins: tuple[str, ...]) -> web.middleware:
    allow_any = "*" in origins

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not (allow_any or origin in origins):
            return await handler(request)
        if (
            request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        if origin in origins:
            response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = (
            "Retry-After, WWW-Authenticate"
        )
        response.headers.add("Vary", "Origin")
        return response

    return cors
