"""Cookie mode: the refresh token lives in an HttpOnly session cookie, never in a body.

The flows are the service's, exactly as in body mode (rotation, reuse detection,
revocation); this module only moves the refresh token between the service and the
cookie, and refuses, before anything changes, a request that spends the cookie without
passing the CSRF check.
"""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..caller import Caller
from ..cookies import CookieSession, new_csrf_token
from ..service import SignedIn
from .common import json_ok

SIGNED_OUT = {"message": "You've been signed out!"}


def wants_cookie(request: web.Request, body_token: str | None) -> bool:
    """Refresh and sign-out use the cookie when the body has no refresh token and the
    request has the cookie; a body token always wins."""
    return not body_token and request.app[keys.AUTH].cookies.present(request)


async def signed_in(
    request: web.Request, profile: dict[str, object], tokens: SignedIn
) -> web.Response:
    """The sign-in answer without the refresh token, plus the session's CSRF token;
    the refresh token goes into the cookie."""
    cookies = request.app[keys.AUTH].cookies
    session = CookieSession(tokens.refresh_token, new_csrf_token())
    response = json_ok(
        {
            **profile,
            "accessToken": tokens.access_token,
            "tokenType": "Bearer",
            "expiresIn": tokens.expires_in,
            "csrfToken": session.csrf_token,
        }
    )
    await cookies.write(request, response, session)
    return response


async def refresh(request: web.Request) -> web.Response:
    """A new access token from the cookie; the cookie is set again with the rotated
    refresh token. The CSRF token stays the session's for its whole life, so every tab
    of the browser keeps a valid one."""
    auth = request.app[keys.AUTH]
    session = await auth.cookies.checked(request)
    refreshed = await auth.service.refresh(Caller.of(request), session.refresh_token)
    response = json_ok(
        {
            "accessToken": refreshed.access_token,
            "tokenType": "Bearer",
            "expiresIn": refreshed.expires_in,
            "csrfToken": session.csrf_token,
        }
    )
    successor = CookieSession(refreshed.refresh_token, session.csrf_token)
    await auth.cookies.write(request, response, successor)
    return response


async def signout(request: web.Request) -> web.Response:
    """Revoke the cookie's session and expire the cookie. Copies of the cookie hold a
    token of a revoked session from now on: `refresh_revoked`."""
    auth = request.app[keys.AUTH]
    session = await auth.cookies.checked(request)
    await auth.service.signout(Caller.of(request), session.refresh_token)
    response = json_ok(dict(SIGNED_OUT))
    await auth.cookies.expire(request, response)
    return response
