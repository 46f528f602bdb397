"""Refusing cross-site requests to routes that act on cookies alone.

A GET that refreshes or signs out with the browser's cookies is open to cross-site
request forgery: `SameSite=Lax` still sends the cookies on a top-level navigation from
another site. The seed's front end sends no CSRF header, so the browser's own headers
decide: `Sec-Fetch-Site: cross-site` (every current browser sends it), or an `Origin`
that cookie mode's `OriginPolicy` does not admit (neither the server's own nor named in
`server.cors_origins`; `null`, `*` and repeated Origin headers never are).
"""

from __future__ import annotations

from aiohttp import web

from ..csrf import OriginPolicy

SEC_FETCH_SITE = "Sec-Fetch-Site"


def is_cross_site(request: web.BaseRequest, origins: OriginPolicy) -> bool:
    """True for a request a browser made on another site's behalf. A request with
    neither header (curl, an old browser's same-origin GET) is not refused: the
    SameSite cookies are then the protection."""
    sites = [
        value.strip().lower() for value in request.headers.getall(SEC_FETCH_SITE, ())
    ]
    return "cross-site" in sites or not origins.admits(request)
