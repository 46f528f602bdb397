"""`Auth`: the auth server as an object a host aiohttp app embeds, and the standalone
server is built from.

    auth = Auth(load_settings())                 # or Auth({"tokens": {...}}), Auth("x.toml")
    auth.setup(app, prefix="/api/auth")          # routes, middleware, background tasks

    @auth.requires("admin")
    async def report(request): ...

    claims = auth.user(request)                  # the verified access token, or None

Creating an Auth does no I/O (but for prometheus-client's files in multiprocess mode,
under `--workers N`: server/metrics.py). Its resources (storage, signing keys, the
hashing pool) and background tasks (key reloads, revocation polling, the purge) start
and stop with the app it is set up in, through the app's cleanup context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from os import PathLike
from typing import Any, TypeVar

from aiohttp import web

from storage import Storage, create_storage

from . import clock, dialects, keys, signing_keys
from .clientaddr import parse_networks
from .cookies import COOKIE_SECRET, SessionCookies
from .cors import cors_middleware
from .csrf import OriginPolicy
from .events import run_event_summaries
from .guards import Role, requires
from .health import Health
from .keywatch import maintain_keys
from .metrics import NO_METRICS, Metrics, PrometheusMetrics
from .middleware import (
    ConflictingTokens,
    RouteMark,
    auth_middleware,
    read_access_token,
)
from .openapi import build_document
from .passwords import PasswordHasher
from .purge import purge_forever
from .ratelimit import RateLimiter
from .revocation import RevocationSet
from .routes import AUTH_PREFIX, USERS_PREFIX, Route, RouteSet
from .service import AuthService
from .settings import Settings, load_settings, settings_from_mapping
from .tokens import AccessClaims, AccessTokens, RefreshTokens
from .websocket import OpenSockets, SessionSocket, open_session_socket

SUCCESSOR_SECRET = "refresh-successor-key"
# What a host app gets by default: the auth routes, the user routes, the routes of the
# seed dialects listed in `server.dialects` (listing one is the opt-in), the JWKS and the
# OpenAPI document. The standalone server adds the seeds' demo content, the WebSocket
# echo, the demo page (`server.demo_page`), /api/health and /metrics (`metrics.enabled`);
# a host app may add the `health` and `metrics` groups to its own.
EMBEDDED_GROUPS = frozenset({"auth", "users", dialects.GROUP, "meta"})
STANDALONE_GROUPS = EMBEDDED_GROUPS | {"content", "ws", "demo", "health", "metrics"}
SettingsSource = Settings | Mapping[str, Any] | str | PathLike[str] | None
H = TypeVar("H")
logger = logging.getLogger("auth.server")


class Auth:
    """One auth server: its settings, storage, tokens and service, mountable into one app."""

    def __init__(
        self, settings: SettingsSource = None, *, storage: Storage | None = None
    ) -> None:
        """`settings`: a Settings, a mapping shaped like settings.toml, a settings file's
        path, or None for the defaults; AUTH_* environment variables override all but a
        Settings. `storage`: one the host already has (opened and closed with the app
        like any other)."""
        self.settings = _as_settings(settings)
        self.storage = storage or create_storage(self.settings)
        self.passwords = PasswordHasher(self.settings.passwords)
        self.revocations = RevocationSet()
        self.limiter = RateLimiter(self.settings.ratelimit, self.storage)
        self.access_tokens = AccessTokens(self.settings.tokens)
        self.refresh_tokens = RefreshTokens()
        self.metrics: Metrics = (
            PrometheusMetrics(lambda: self.passwords.pending)
            if self.settings.metrics.enabled
            else NO_METRICS
        )
        self.health = Health(self.storage)
        self.service = AuthService(
            self.settings,
            self.storage,
            self.access_tokens,
            self.refresh_tokens,
            self.passwords,
            self.limiter,
            self.revocations,
            metrics=self.metrics,
        )
        self.trusted_proxies = parse_networks(self.settings.server.trusted_proxies)
        self.sockets = OpenSockets(
            self.settings.server.max_websockets_per_user,
            self.settings.server.max_websockets_per_address,
        )
        self.cookies = SessionCookies(
            self.settings.cookies,
            self.settings.tokens.refresh_ttl,
            OriginPolicy(self.settings.server.cors_origins, self.trusted_proxies),
        )
        self.prefix = AUTH_PREFIX
        self.users_prefix = USERS_PREFIX
        self.routes: list[Route] = []
        self.openapi: dict[str, Any] = {}
        self._marks: dict[web.AbstractRoute, RouteMark] = {}
        self._app: web.Application | None = None

    # mounting

    def setup(
        self,
        app: web.Application,
        *,
        prefix: str = AUTH_PREFIX,
        users_prefix: str = USERS_PREFIX,
        groups: Iterable[str] = EMBEDDED_GROUPS,
        owns_app: bool = False,
    ) -> None:
        """Install into `app`: the routes of `groups` (the `auth` group under `prefix`,
        the `users` group under `users_prefix`), the middleware (after the app's own) and
        the background tasks. Only the auth routes, and failed checks of handlers guarded
        with `requires`, answer in the contract's shape; the app's other routes are left
        alone unless `owns_app` (the standalone server)."""
        if self._app is not None:
            raise RuntimeError("this Auth is already set up in an app")
        self._app = app
        self.prefix, self.users_prefix = prefix.rstrip("/"), users_prefix.rstrip("/")
        app[keys.AUTH] = self
        app[keys.TRUSTED_PROXIES] = self.trusted_proxies
        wanted = frozenset(groups)
        if not self.settings.server.demo_page:
            wanted -= {"demo"}
        if not self.settings.metrics.enabled:
            wanted -= {"metrics"}
        prefixes = {AUTH_PREFIX: self.prefix, USERS_PREFIX: self.users_prefix}
        for route_set in self._route_sets():
            self._mount(app, route_set, wanted, prefixes)
        self.openapi = build_document(self.routes, self.settings.passwords)
        for warning in dialects.startup_warnings(self.settings):
            logger.warning(warning)
        origins = self.settings.server.cors_origins
        if origins:
            app.middlewares.append(cors_middleware(origins))
        app.middlewares.append(
            auth_middleware(
                self.service,
                self._marks,
                owns_app=owns_app,
                max_body_bytes=self.settings.server.max_body_bytes,
            )
        )
        app.cleanup_ctx.append(self._lifecycle)
        app.on_shutdown.append(self._close_sockets)

    def _route_sets(self) -> list[RouteSet]:
        """The APIs of `server.dialects`, in its order: where two mount one method and
        path, the first listed answers."""
        return dialects.route_sets(self.settings.server.dialects)

    def _mount(
        self,
        app: web.Application,
        route_set: RouteSet,
        groups: frozenset[str],
        prefixes: Mapping[str, str],
    ) -> None:
        """Add the routes of `groups`; a method and path already mounted (by a route set
        listed earlier) stay with the first."""
        taken = {(route.method, route.path) for route in self.routes}
        for route in route_set.routes:
            if route.group not in groups:
                continue
            path = _moved(route.path, prefixes)
            if (route.method, path) in taken:
                continue
            mark = RouteMark(
                route.role, route_set.render, route.read_token or route_set.read_token
            )
            # A GET answers HEAD too (load balancers probe the health route that way).
            methods = ("GET", "HEAD") if route.method == "GET" else (route.method,)
            for method in methods:
                self._marks[app.router.add_route(method, path, route.handler)] = mark
            self.routes.append(replace(route, path=path))

    # guarding a host's handlers

    @staticmethod
    def requires(role: Role | str = Role.USER) -> Callable[[H], H]:
        """Guard a handler: a signed-in user with `role` (default: any signed-in user).
        Failed checks answer in the contract's shape; the handler's own answers are
        untouched."""
        return requires(role)

    def user(self, request: web.Request) -> AccessClaims | None:
        """The request's verified access token (user id, roles, session id), or None.
        On a guarded route the middleware has verified it; elsewhere it is verified
        here (no I/O)."""
        claims = request.get(keys.CLAIMS)
        if claims is not None:
            return claims
        try:
            return self.service.claims_or_none(read_access_token(request))
        except ConflictingTokens:
            return None

    async def websocket(self, request: web.Request) -> SessionSocket:
        """Upgrade `request` to a WebSocket bound to its session: authenticated (headers
        or `?access_token=`) unless a guard already did, closed with 4401 when the
        session is revoked or its access token expires without a `reauth` frame, and
        with 1001 at shutdown. A refused token, or a user or address over its socket
        quota (429), raises an HTTP error with the contract's body, before any upgrade."""
        poll = self.settings.tokens.revocation_poll
        return await open_session_socket(request, self.service, poll, self.sockets)

    # lifecycle

    async def _close_sockets(self, app: web.Application) -> None:
        """on_shutdown, before aiohttp waits for handlers: WebSockets would otherwise
        hold the shutdown until its timeout and then be dropped."""
        await self.sockets.close_all()

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        async with self.running():
            yield

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Auth]:
        """Open storage, load keys, start the hashing pool and the background tasks;
        stop them all on the way out. `setup` runs this with the app."""
        await self.storage.open()
        try:
            await self.passwords.start()
            await self._load_keys()
            known, cursor = await self.storage.revocations_since(None, clock.epoch())
            self.revocations.merge(known)
            async with (
                _background(maintain_keys(self.settings, self.access_tokens)),
                _background(self._follow_revocations(cursor)),
                _background(self._purge()),
                _background(run_event_summaries()),
                _background(self.metrics.maintain()),
            ):
                yield self
        finally:
            self.passwords.close()
            await self.storage.close()

    async def _load_keys(self) -> None:
        self.access_tokens.ring = await asyncio.to_thread(
            signing_keys.load_key_ring, self.settings
        )
        self.refresh_tokens.key = await self.storage.get_or_create_secret(
            SUCCESSOR_SECRET, secrets.token_bytes(32)
        )
        # Shared through storage: every instance reads every other's session cookies.
        cookie_key = await self.storage.get_or_create_secret(
            COOKIE_SECRET, secrets.token_bytes(32)
        )
        self.cookies.start(cookie_key, self.prefix)

    async def _follow_revocations(self, cursor: int) -> None:
        """Learn other instances' revocations, none per request: only the rows added
        since the last read, every `tokens.revocation_poll` seconds, and at once when
        the database pushes a notice (PostgreSQL LISTEN/NOTIFY)."""
        notice = asyncio.Event()
        await self.storage.watch_revocations(notice.set)
        every = self.settings.tokens.revocation_poll
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(notice.wait(), every)
            notice.clear()
            try:
                new, cursor = await self.storage.revocations_since(
                    cursor, clock.epoch()
                )
                self.revocations.merge(new)
            except Exception:
                logger.exception("reading new revocations failed")
                self.metrics.task_failed("revocation_poll")

    def _purge(self) -> Awaitable[None]:
        purge = self.settings.purge
        return purge_forever(
            self.storage, purge.interval, purge.batch_size, self.metrics
        )


def _as_settings(source: SettingsSource) -> Settings:
    if isinstance(source, Settings):
        return source
    if source is None:
        return settings_from_mapping({})
    if isinstance(source, Mapping):
        return settings_from_mapping(source)
    return load_settings(source)


def _moved(path: str, prefixes: Mapping[str, str]) -> str:
    for default, chosen in prefixes.items():
        if path == default or path.startswith(default + "/"):
            return chosen + path[len(default) :]
    return path


@contextlib.asynccontextmanager
async def _background(coroutine: Awaitable[None]) -> AsyncIterator[None]:
    """Run a background task for the life of a context."""
    task = asyncio.ensure_future(coroutine)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
