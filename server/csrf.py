"""The CSRF defence of cookie mode.

A browser attaches the session cookie to every request to our origin, whichever page
made it. So a request that spends the cookie must also show that one of our pages made
it: the `X-CSRF-Token` header, a value only our own responses gave to that page (another
site can neither read it nor guess it), and, when the browser names the request's
origin, an origin that is ours or one `server.cors_origins` names. `*` there never
counts: credentials need a named origin.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import hdrs, web
from multidict import istr
from yarl import URL

from .clientaddr import Network, peer_is_trusted

X_CSRF_TOKEN = istr("X-CSRF-Token")
X_FORWARDED_PROTO = istr("X-Forwarded-Proto")
WEB_SCHEMES = ("http", "https")
Origin = tuple[str, str, int | None]  # scheme, host, port (the default one if unsaid)


def parse_origin(text: str) -> Origin | None:
    """`scheme://host[:port]` as a comparable triple; None for anything else (`null`,
    a path, credentials, a scheme that is not http or https)."""
    try:
        url = URL(text.strip())
        if (
            url.scheme not in WEB_SCHEMES
            or not url.host
            or url.path not in ("", "/")
            or url.raw_query_string
            or url.raw_fragment
            or url.raw_user is not None
        ):
            return None
        return url.scheme, url.host.lower().rstrip("."), url.port
    except (ValueError, TypeError):
        return None


class OriginPolicy:
    """Which origins may spend the session cookie: the server's own (the scheme and
    `Host` of the request) and the origins `server.cors_origins` names."""

    def __init__(
        self, listed: Iterable[str], trusted_proxies: tuple[Network, ...] = ()
    ) -> None:
        parsed = (parse_origin(origin) for origin in listed if origin.strip() != "*")
        self.allowed = frozenset(origin for origin in parsed if origin is not None)
        self.trusted_proxies = trusted_proxies

    def admits(self, request: web.BaseRequest) -> bool:
        """True when the request names no origin (not a cross-site browser request:
        browsers name it on every cross-origin request and every POST), or an allowed
        one."""
        sent = request.headers.getall(hdrs.ORIGIN, ())
        if not sent:
            return True
        if len(sent) != 1:
            return False
        origin = parse_origin(sent[0])
        if origin is None:
            return False
        return origin in self.allowed or origin == self.own_origin(request)

    def own_origin(self, request: web.BaseRequest) -> Origin | None:
        """The origin the request was sent to. Behind a TLS-terminating proxy listed in
        `server.trusted_proxies`, its `X-Forwarded-Proto` gives the scheme."""
        host = request.headers.getall(hdrs.HOST, ())
        if len(host) != 1:
            return None
        return parse_origin(f"{self._scheme(request)}://{host[0]}")

    def _scheme(self, request: web.BaseRequest) -> str:
        said = request.headers.get(X_FORWARDED_PROTO)
        if said and peer_is_trusted(request, self.trusted_proxies):
            scheme = said.rpartition(",")[2].strip().lower()
            if scheme in WEB_SCHEMES:
                return scheme
        return request.scheme


def token_matches(request: web.BaseRequest, expected: str) -> bool:
    """Exactly one `X-CSRF-Token` header, equal to `expected` (constant time)."""
    sent = request.headers.getall(X_CSRF_TOKEN, ())
    if len(sent) != 1 or not expected:
        return False
    return hmac.compare_digest(
        sent[0].strip().encode("utf-8", "replace"), expected.encode("utf-8")
    )
