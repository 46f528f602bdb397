"""The session cookie of cookie mode, through aiohttp-session.

The cookie holds the session's refresh token and CSRF token, encrypted and authenticated
by aiohttp-session's `EncryptedCookieStorage` (Fernet: AES-128-CBC with HMAC-SHA256)
under a key kept in the server's storage, so every instance and worker sharing that
storage reads every other's cookies, and a restart signs nobody out. The server-side
state it points to is the session itself, already in storage: revocation, rotation and
expiry stay where they are for body mode, and a copy of an old cookie is worth exactly
what its refresh token is worth.

Only the handlers that use the cookie call the storage's `load_session` and
`save_session`: no session middleware runs on any other route (the protected routes pay
nothing for cookie mode), and aiohttp-session's string request keys, set only by its
middleware and `get_session`, are never used.

A cookie that does not decrypt (garbage, forged, made under another key, too old) is
answered as no cookie. aiohttp-session would log a warning for each; here it is a
`session_cookie_invalid` security event, summarised per address and route like the
other events a client can cause at will, so a flood of junk cookies costs no log line
each.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet, InvalidToken

from . import errors
from .csrf import OriginPolicy, token_matches
from .events import log_event
from .settings import CookieSettings

COOKIE_SECRET = "session-cookie-key"  # the storage secret's name: 32 random bytes
REFRESH = "refresh"
CSRF = "csrf"
MAX_ORIGIN = 256


@dataclass(frozen=True)
class CookieSession:
    """What the cookie carries: never sent to JavaScript except the CSRF token."""

    refresh_token: str
    csrf_token: str


class CookieStorage(EncryptedCookieStorage):
    """aiohttp-session's encrypted cookie, expired with all the attributes it was set
    with (aiohttp-session passes only path and domain when it deletes), and a cookie
    that does not decrypt reported as a summarised event, not a warning per request."""

    def __init__(self, key: bytes, **params: Any) -> None:
        self._cookie_fernet = Fernet(base64.urlsafe_b64encode(key))
        super().__init__(self._cookie_fernet, **params)

    async def load_session(self, request: web.Request) -> Session:
        """EncryptedCookieStorage.load_session, but for what it does with a cookie
        that does not decrypt."""
        cookie = self.load_cookie(request)
        if cookie is not None:
            try:
                text = self._cookie_fernet.decrypt(cookie.encode(), ttl=self.max_age)
                data = json.loads(text)
            except (InvalidToken, ValueError):
                log_event("session_cookie_invalid", request, level=logging.WARNING)
            else:
                return Session(None, data=data, new=False, max_age=self.max_age)
        return Session(None, data=None, new=True, max_age=self.max_age)

    def save_cookie(
        self,
        response: web.StreamResponse,
        cookie_data: str,
        *,
        max_age: int | None = None,
    ) -> None:
        if cookie_data:
            super().save_cookie(response, cookie_data, max_age=max_age)
            return
        params = self.cookie_params
        response.del_cookie(
            self.cookie_name,
            path=params["path"],
            secure=params["secure"],
            httponly=params["httponly"],
            samesite=params["samesite"],
        )


class SessionCookies:
    """Read, check, set and expire the session cookie. `start` gives it its key and its
    path (the auth routes' prefix) when the app starts."""

    def __init__(
        self, settings: CookieSettings, max_age: int, origins: OriginPolicy
    ) -> None:
        self.settings = settings
        self.max_age = max_age
        self.origins = origins
        self._storage: CookieStorage | None = None

    def start(self, key: bytes, path: str) -> None:
        self._storage = CookieStorage(
            key,
            cookie_name=self.settings.name,
            max_age=self.max_age,
            path=path or "/",
            secure=self.settings.secure,
            httponly=True,
            samesite=self.settings.samesite,
        )

    @property
    def storage(self) -> EncryptedCookieStorage:
        if self._storage is None:
            raise RuntimeError("the session cookie's key is loaded when the app starts")
        return self._storage

    def present(self, request: web.BaseRequest) -> bool:
        return self.settings.name in request.cookies

    async def read(self, request: web.Request) -> CookieSession | None:
        """The cookie's session, or None when there is none that we wrote (absent,
        tampered with, made under another key, or older than `tokens.refresh_ttl`)."""
        if not self.present(request):
            return None
        session = await self.storage.load_session(request)
        refresh, csrf = session.get(REFRESH), session.get(CSRF)
        if session.new or not isinstance(refresh, str) or not isinstance(csrf, str):
            return None
        return CookieSession(refresh, csrf)

    async def checked(self, request: web.Request) -> CookieSession:
        """The cookie's session for a request that spends it: `refresh_missing` without
        one, `csrf_failed` unless the CSRF token and the origin pass."""
        session = await self.read(request)
        if session is None:
            raise errors.refresh_missing()
        if not token_matches(request, session.csrf_token):
            raise _refused(request, "token")
        if not self.origins.admits(request):
            raise _refused(request, "origin")
        return session

    async def write(
        self, request: web.Request, response: web.StreamResponse, session: CookieSession
    ) -> None:
        cookie = await self.storage.new_session()
        cookie[REFRESH] = session.refresh_token
        cookie[CSRF] = session.csrf_token
        await self.storage.save_session(request, response, cookie)

    async def expire(self, request: web.Request, response: web.StreamResponse) -> None:
        """Set-Cookie with Max-Age=0: the browser drops it."""
        await self.storage.save_session(
            request, response, Session(None, data=None, new=True, max_age=0)
        )


def _refused(request: web.Request, reason: str) -> errors.ApiError:
    log_event(
        "csrf_failed",
        request,
        level=logging.WARNING,
        reason=reason,
        origin=request.headers.get(hdrs.ORIGIN, "")[:MAX_ORIGIN] or None,
    )
    return errors.csrf_failed()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)
