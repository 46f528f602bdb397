"""Public documents: the JWKS and the OpenAPI description."""

from __future__ import annotations

from aiohttp import web

from .. import keys

JWKS_MAX_AGE = 60


async def jwks(request: web.Request) -> web.Response:
    """Public keys of the live tokens; HS256 keys are secrets and never listed."""
    ring = request.app[keys.AUTH].access_tokens.ring
    return web.json_response(
        ring.jwks(), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[keys.AUTH].openapi)
