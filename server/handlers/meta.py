"""Public documents: the JWKS and the OpenAPI description."""

from __future__ import annotations

from aiohttp import web

from .. import keys


async def jwks(request: web.Request) -> web.Response:
    """Public keys of the live tokens and of the key published to sign next; HS256 keys
    are secrets and never listed. Cached for `tokens.jwks_max_age`, which the delay
    before a new key signs includes."""
    ring = request.app[keys.AUTH].access_tokens.ring
    max_age = request.app[keys.AUTH].settings.tokens.jwks_max_age
    return web.json_response(
        ring.jwks(), headers={"Cache-Control": f"public, max-age={max_age}"}
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[keys.AUTH].openapi)
