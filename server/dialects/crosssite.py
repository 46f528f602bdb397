"""Refusing cross-site requests to routes that act on cookies alone.

A GET that refreshes or signs out with the browser's cookies is open to cross-site
request forgery: `SameSite=Lax` still sends the cookies on a top-level navigation from
another site. The seed's front end sends no CSRF header, so the browser's own headers
decide: `Sec-Fetch-Site: cross-site` (every current browser sends it), or an `Origin`
that is neither the server's own nor listed in `server.cors_origins`.
"""

from __future__ import annotations

from aiohttp import web

SEC_FETCH_SITE = "Sec-Fetch-Site"
ORIGIN = "Origin"
ANY_ORIGIN = "*"


def is_cross_site(request: web.BaseRequest, allowed_origins: tuple[str, ...]) -> bool:
    """True for a request a browser made on another site's behalf. A request with
    neither header (curl, an old browser's same-origin GET) is not refused: the
    SameSite cookies are then the protection. `*` never admits an origin here:
    credentials need a named one."""
    headers = request.headers
    sites = [value.strip().lower() for value in headers.getall(SEC_FETCH_SITE, ())]
    if "cross-site" in sites:
        return True
    origins = [value.strip() for value in headers.getall(ORIGIN, ())]
    if not origins:
        return False
    if len(origins) > 1:
        return True  # no browser sends two: refuse rather than pick one
    origin = origins[0]
    if origin.lower() == own_origin(request):
        return False
    return origin in ("null", ANY_ORIGIN) or origin not in allowed_origins


def own_origin(request: web.BaseRequest) -> str:
    """The origin the request was sent to: its scheme and Host, in lower case."""
    return f"{request.scheme}://{request.host}".lower()
