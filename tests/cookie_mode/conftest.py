"""Fixtures of the cookie-mode tests: apps whose clients keep no cookies, so each
request carries exactly the copy of the session cookie a test gives it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient

from server import create_app
from tests.backends import postgres_schema_dsn
from tests.conftest import Api, make_settings

MakeBrowserApi = Callable[..., Awaitable[Api]]


@contextlib.asynccontextmanager
async def browser_apis(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, backend: str
) -> AsyncIterator[MakeBrowserApi]:
    """Like conftest's `make_api`, with clients that keep no cookies and an optional
    app factory (an embedding host)."""
    database = (
        postgres_schema_dsn() if backend == "postgres" else contextlib.nullcontext("")
    )
    async with database as dsn:

        async def build(
            app_factory: Callable[..., web.Application] = create_app, **sections: Any
        ) -> Api:
            settings = make_settings(tmp_path, backend, dsn, **sections)
            client = await aiohttp_client(
                app_factory(settings), cookie_jar=DummyCookieJar()
            )
            return Api(client)

        yield build


@pytest.fixture
async def make_browser_api(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, backend: str
) -> AsyncIterator[MakeBrowserApi]:
    async with browser_apis(aiohttp_client, tmp_path, backend) as build:
        yield build


@pytest.fixture
async def memory_browser_api(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> AsyncIterator[MakeBrowserApi]:
    """For checks that do not depend on the storage backend."""
    async with browser_apis(aiohttp_client, tmp_path, "memory") as build:
        yield build
