"""The standalone server's app: an `Auth` that owns the whole app, so every route and
every error of it speaks the contract. `create_app` does no I/O; tests and `run.py`
build the same app."""

from __future__ import annotations

from aiohttp import web

from storage import Storage

from .auth import STANDALONE_GROUPS, Auth
from .settings import Settings


def create_app(
    settings: Settings, *, storage: Storage | None = None
) -> web.Application:
    """A ready-to-run app. Pass `storage` to share one (tests); it is opened and closed
    with the app either way."""
    app = web.Application(client_max_size=settings.server.max_body_bytes)
    Auth(settings, storage=storage).setup(app, groups=STANDALONE_GROUPS, owns_app=True)
    return app
