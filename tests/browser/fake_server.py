"""STAND-IN SERVER, FOR THE DEMO PAGE'S OWN BROWSER TESTS ONLY. Not the auth server.

While the real server's cookie mode, sessions routes and `GET /` are being built, this
test-only app lets the page and its browser tests be proven. It serves `server/static/`
at `/` and `/static/`, and implements in memory, minimally, what API.md says of the
routes the page calls: sign-up; cookie-mode sign-in (an HttpOnly, SameSite=Strict session
cookie on Path=/api/auth); refresh and sign-out from that cookie with `X-CSRF-Token` and
the Origin check; the sessions list and revoke; the four `/api/test/*` routes. It is
stricter than the contract where that makes the page's mistakes visible: every refresh
rotates the CSRF token and retires the previous one, and a retired refresh token is reuse
at once (no grace interval), so two refreshes sent together sign the page out.
Not implemented: body-mode refresh and sign-out, roles beyond `user`, rate limits,
password rules beyond a length. Time comes from `server.clock` so tests can advance it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from server import clock

STATIC_DIR = Path(__file__).resolve().parents[2] / "server" / "static"
COOKIE_NAME = "auth_session"
# The page's policy: the demo must work without inline script or style.
PAGE_CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
ROLE_MESSAGES = {
    "moderator": "Require Moderator Role!",
    "admin": "Require Admin Role!",
}
CONTENT = {
    "all": (None, "Public Content."),
    "user": ("user", "User Content."),
    "mod": ("moderator", "Moderator Content."),
    "admin": ("admin", "Admin Content."),
}


class Refused(Exception):
    """An answer in the contract's error shape."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class User:
    id: str
    username: str
    email: str
    password_digest: bytes
    roles: tuple[str, ...] = ("user",)


@dataclass
class Session:
    id: str
    user: User
    refresh_token: str
    csrf_token: str
    created: float
    last_used: float
    user_agent: str | None
    ip: str | None
    live: bool = True
    retired: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class FakeSettings:
    access_ttl: int = 60
    refresh_ttl: int = 3600
    # Hold each refresh answer this long, so calls failing together surely overlap it.
    refresh_delay: float = 0.0


class FakeAuth:
    """The stand-in's state and handlers."""

    def __init__(self, settings: FakeSettings) -> None:
        self.settings = settings
        self.users: dict[str, User] = {}
        self.sessions: dict[str, Session] = {}
        self.by_refresh: dict[str, Session] = {}
        self.access: dict[str, tuple[Session, float]] = {}

    # ---- tokens -------------------------------------------------------------------

    def _issue_access(self, session: Session) -> str:
        token = secrets.token_urlsafe(24)
        self.access[token] = (session, clock.now() + self.settings.access_ttl)
        return token

    def _new_refresh(self, session: Session) -> None:
        session.refresh_token = secrets.token_urlsafe(32)
        session.csrf_token = secrets.token_urlsafe(24)
        self.by_refresh[session.refresh_token] = session

    def _set_cookie(self, response: web.Response, session: Session) -> None:
        response.set_cookie(
            COOKIE_NAME,
            session.refresh_token,
            max_age=self.settings.refresh_ttl,
            path="/api/auth",
            httponly=True,
            samesite="Strict",
        )

    def _authenticate(self, request: web.Request) -> Session:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not token:
            raise Refused(403, "No token provided!", "token_missing")
        found = self.access.get(token)
        if found is None:
            raise Refused(401, "Unauthorized!", "token_invalid")
        session, expires = found
        if clock.now() >= expires:
            raise Refused(
                401, "Unauthorized! Access Token was expired!", "token_expired"
            )
        if not session.live:
            raise Refused(401, "Unauthorized!", "token_revoked")
        return session

    def _cookie_session(self, request: web.Request) -> Session | None:
        """The session of the request's cookie, after the CSRF and Origin checks."""
        token = request.cookies.get(COOKIE_NAME)
        if not token:
            raise Refused(403, "Refresh Token is required!", "refresh_missing")
        session = self.by_refresh.get(token)
        if session is None:
            return None
        origin = request.headers.get("Origin")
        own = f"{request.scheme}://{request.host}"
        sent = request.headers.get("X-CSRF-Token", "")
        if (origin is not None and origin != own) or not hmac.compare_digest(
            sent.encode(), session.csrf_token.encode()
        ):
            raise Refused(403, "CSRF check failed.", "csrf_failed")
        return session

    # ---- handlers -----------------------------------------------------------------

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            STATIC_DIR / "index.html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"},
        )

    async def signup(self, request: web.Request) -> web.Response:
        body = await _json(request)
        username, email, password = (
            body.get("username"),
            body.get("email"),
            body.get("password"),
        )
        if not isinstance(username, str) or not USERNAME.match(username):
            raise Refused(
                400, "username: 3 to 32 letters, digits, _ . -", "validation_error"
            )
        if not isinstance(email, str) or "@" not in email:
            raise Refused(400, "email: not a valid address", "validation_error")
        if not isinstance(password, str) or len(password) < 8:
            raise Refused(400, "password: at least 8 characters", "validation_error")
        if username.lower() in self.users:
            raise Refused(409, "Failed! Username is already in use!", "username_taken")
        if any(u.email.lower() == email.lower() for u in self.users.values()):
            raise Refused(409, "Failed! Email is already in use!", "email_taken")
        user = User(secrets.token_hex(8), username, email, _digest(password))
        self.users[username.lower()] = user
        return web.json_response(
            {"message": "User was registered successfully!", "id": user.id}, status=201
        )

    async def signin(self, request: web.Request) -> web.Response:
        body = await _json(request)
        user = self.users.get(str(body.get("username", "")).lower())
        password = body.get("password")
        if (
            user is None
            or not isinstance(password, str)
            or not hmac.compare_digest(user.password_digest, _digest(password))
        ):
            raise Refused(401, "Invalid username or password.", "invalid_credentials")
        now = clock.now()
        session = Session(
            secrets.token_hex(16),
            user,
            "",
            "",
            now,
            now,
            request.headers.get("User-Agent"),
            request.remote,
        )
        self._new_refresh(session)
        self.sessions[session.id] = session
        answer: dict[str, Any] = {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "roles": [f"ROLE_{role.upper()}" for role in user.roles],
            "accessToken": self._issue_access(session),
            "tokenType": "Bearer",
            "expiresIn": self.settings.access_ttl,
        }
        if body.get("cookie") is True:
            answer["csrfToken"] = session.csrf_token
            response = web.json_response(answer)
            self._set_cookie(response, session)
            return response
        answer["refreshToken"] = session.refresh_token
        return web.json_response(answer)

    async def refresh(self, request: web.Request) -> web.Response:
        await _json(request)
        if self.settings.refresh_delay:
            await asyncio.sleep(self.settings.refresh_delay)
        token = request.cookies.get(COOKIE_NAME, "")
        session = self._cookie_session(request)
        if session is None:
            raise Refused(403, "Refresh token is not in database!", "refresh_unknown")
        if token != session.refresh_token:
            session.live = False
            raise Refused(403, "Refresh token was reused.", "refresh_reused")
        if not session.live:
            raise Refused(403, "Refresh token was revoked.", "refresh_revoked")
        session.retired.add(token)
        self._new_refresh(session)
        session.last_used = clock.now()
        response = web.json_response(
            {
                "accessToken": self._issue_access(session),
                "tokenType": "Bearer",
                "expiresIn": self.settings.access_ttl,
                "csrfToken": session.csrf_token,
            }
        )
        self._set_cookie(response, session)
        return response

    async def signout(self, request: web.Request) -> web.Response:
        await _json(request)
        session = self._cookie_session(request)
        if session is not None:
            session.live = False
        response = web.json_response({"message": "You've been signed out!"})
        response.set_cookie(
            COOKIE_NAME,
            "",
            max_age=0,
            path="/api/auth",
            httponly=True,
            samesite="Strict",
        )
        return response

    async def list_sessions(self, request: web.Request) -> web.Response:
        caller = self._authenticate(request)
        mine = [s for s in self.sessions.values() if s.user is caller.user and s.live]
        mine.sort(key=lambda s: s.created, reverse=True)
        return web.json_response(
            {
                "sessions": [
                    {
                        "id": s.id,
                        "current": s is caller,
                        "createdAt": _iso(s.created),
                        "lastUsedAt": _iso(s.last_used),
                        "expiresAt": _iso(s.last_used + self.settings.refresh_ttl),
                        "userAgent": s.user_agent,
                        "ip": s.ip,
                    }
                    for s in mine
                ]
            }
        )

    async def revoke_session(self, request: web.Request) -> web.Response:
        caller = self._authenticate(request)
        session = self.sessions.get(request.match_info["id"])
        if session is None or session.user is not caller.user or not session.live:
            raise Refused(404, "Session not found.", "not_found")
        session.live = False
        return web.json_response({"message": "Session revoked."})

    async def me(self, request: web.Request) -> web.Response:
        user = self._authenticate(request).user
        return web.json_response(
            {
                "id": user.id,
                "username": user.username,
                "email": user.email,
                "roles": [f"ROLE_{role.upper()}" for role in user.roles],
            }
        )

    async def content(self, request: web.Request) -> web.Response:
        role, text = CONTENT[request.match_info["board"]]
        if role is not None:
            session = self._authenticate(request)
            if role not in session.user.roles:
                raise Refused(403, ROLE_MESSAGES[role], "forbidden")
        return web.Response(text=text)


@web.middleware
async def contract_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except Refused as refused:
        headers = (
            {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            if refused.status == 401
            else None
        )
        return web.json_response(
            {"message": refused.message, "code": refused.code},
            status=refused.status,
            headers=headers,
        )


def fake_app(settings: FakeSettings, *middlewares: Any) -> web.Application:
    """The stand-in app; `middlewares` go outermost (the tests' request recorder)."""
    fake = FakeAuth(settings)
    app = web.Application(middlewares=[*middlewares, contract_errors])
    app.router.add_get("/", fake.page)
    app.router.add_static("/static/", STATIC_DIR)
    app.router.add_post("/api/auth/signup", fake.signup)
    app.router.add_post("/api/auth/signin", fake.signin)
    app.router.add_post("/api/auth/refreshtoken", fake.refresh)
    app.router.add_post("/api/auth/signout", fake.signout)
    app.router.add_get("/api/auth/sessions", fake.list_sessions)
    app.router.add_delete("/api/auth/sessions/{id}", fake.revoke_session)
    app.router.add_get("/api/users/me", fake.me)
    app.router.add_get(r"/api/test/{board:all|user|mod|admin}", fake.content)
    return app


async def _json(request: web.Request) -> dict[str, Any]:
    """The JSON object of the body; no body reads as `{}`, as the real server does."""
    if not (await request.read()).strip():
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise Refused(400, "body: not JSON", "validation_error") from None
    if not isinstance(body, dict):
        raise Refused(400, "body: not a JSON object", "validation_error")
    return body


def _digest(password: str) -> bytes:
    """Test-only: a stand-in needs no slow hash."""
    return hashlib.sha256(password.encode()).digest()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
