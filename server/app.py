"""The app factory. `create_app` does no I/O: storage, keys, the hashing pool and the
background tasks start in cleanup contexts, so tests and embedders build the same app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable

from aiohttp import web

from storage import Storage, create_storage

from . import clock, keys, keywatch, signing_keys
from .clientaddr import parse_networks
from .cors import cors_middleware
from .middleware import api_middleware
from .openapi import build_document
from .passwords import PasswordHasher
from .purge import purge_forever
from .ratelimit import RateLimiter
from .revocation import RevocationSet
from .routes import ROUTES
from .settings import Settings
from .tokens import AccessTokens, RefreshTokens

logger = logging.getLogger("auth.server")
SUCCESSOR_SECRET = "refresh-successor-key"


def create_app(
    settings: Settings, *, storage: Storage | None = None
) -> web.Application:
    """A ready-to-run app. Pass `storage` to share one (tests); it is opened and closed
    with the app either way."""
    app = web.Application(client_max_size=settings.server.max_body_bytes)
    setup(app, settings, storage=storage)
    return app


def setup(
    app: web.Application, settings: Settings, *, storage: Storage | None = None
) -> None:
    """Install the auth server into an existing app: its routes, its middlewares (after
    the app's own), its background tasks. Guard your handlers with `requires(Role.X)`."""
    cors = (
        [cors_middleware(settings.server.cors_origins)]
        if settings.server.cors_origins
        else []
    )
    app.middlewares.extend([*cors, api_middleware])
    app[keys.SETTINGS] = settings
    app[keys.STORAGE] = storage or create_storage(settings)
    app[keys.PASSWORDS] = PasswordHasher(settings.passwords)
    app[keys.REVOCATIONS] = RevocationSet()
    app[keys.RATE_LIMITER] = RateLimiter(settings.ratelimit, app[keys.STORAGE])
    app[keys.TRUSTED_PROXIES] = parse_networks(settings.server.trusted_proxies)
    app[keys.OPENAPI] = build_document(settings.passwords)
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.guarded_handler)
    app.cleanup_ctx.extend(
        [_storage_ctx, _passwords_ctx, _tokens_ctx, _revocations_ctx, _purge_ctx]
    )


async def _storage_ctx(app: web.Application) -> AsyncIterator[None]:
    storage = app[keys.STORAGE]
    await storage.open()
    yield
    await storage.close()


async def _passwords_ctx(app: web.Application) -> AsyncIterator[None]:
    hasher = app[keys.PASSWORDS]
    await hasher.start()
    yield
    hasher.close()


async def _tokens_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    ring = await asyncio.to_thread(signing_keys.load_key_ring, settings)
    app[keys.ACCESS_TOKENS] = AccessTokens(settings.tokens, ring)
    successor_key = await app[keys.STORAGE].get_or_create_secret(
        SUCCESSOR_SECRET, secrets.token_bytes(32)
    )
    app[keys.REFRESH_TOKENS] = RefreshTokens(successor_key)
    async with _running(keywatch.maintain_keys(settings, app[keys.ACCESS_TOKENS])):
        yield


async def _revocations_ctx(app: web.Application) -> AsyncIterator[None]:
    storage, revocations = app[keys.STORAGE], app[keys.REVOCATIONS]
    revocations.merge(await storage.live_revocations(clock.epoch()))
    poll = app[keys.SETTINGS].tokens.revocation_poll
    async with _running(_poll_revocations(storage, revocations, poll)):
        yield


async def _poll_revocations(
    storage: Storage, revocations: RevocationSet, every: float
) -> None:
    """Learn other instances' revocations: one cheap query a second, none per request."""
    while True:
        await asyncio.sleep(every)
        try:
            revocations.merge(await storage.live_revocations(clock.epoch()))
        except Exception:
            logger.exception("polling revocations failed")


async def _purge_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS].purge
    async with _running(
        purge_forever(app[keys.STORAGE], settings.interval, settings.batch_size)
    ):
        yield


@contextlib.asynccontextmanager
async def _running(coroutine: Awaitable[None]) -> AsyncIterator[None]:
    """Run a background task for the life of a cleanup context."""
    task = asyncio.ensure_future(coroutine)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
