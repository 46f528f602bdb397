"""PostgreSQL going away and coming back, for one app only: the app reaches its schema
through a TCP proxy that the test stops (the port closed, every connection cut) and
starts again. Health answers 503 meanwhile and 200 after; every route that needs the
storage answers 503 `unavailable`, routes that do not keep working, and everything
recovers by itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp.test_utils import TestClient

from server import create_app, keys
from tests.backends import POSTGRES_DSN, postgres_schema_dsn
from tests.conftest import PASSWORD, Api, expect_error, make_admin_token, make_settings
from tests.metrics_kit import Scrape
from tests.tcpproxy import TcpProxy

pytestmark = pytest.mark.skipif(
    not POSTGRES_DSN,
    reason="AUTH_TEST_POSTGRES_DSN is not set: PostgreSQL tests skipped",
)
UNAVAILABLE = "Service unavailable."
NEW_PASSWORD = "a brand new passphrase 42"


def through(dsn: str, port: int) -> str:
    """The DSN with its host and port replaced by the proxy's."""
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


Outage = tuple[Api, TcpProxy]


@pytest.fixture
async def outage(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> AsyncIterator[Outage]:
    target = urlsplit(POSTGRES_DSN)
    async with postgres_schema_dsn() as dsn:
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        await proxy.start()
        settings = make_settings(tmp_path, "postgres", through(dsn, proxy.port))
        client = await aiohttp_client(create_app(settings))
        try:
            yield Api(client), proxy
        finally:
            if not proxy.running:
                await proxy.start()  # the app closes its pool through it
            await client.close()
            await proxy.stop()


async def health(api: Api) -> tuple[int, Any]:
    response = await api.get("/api/health")
    assert response.headers["Cache-Control"] == "no-store"
    return response.status, await response.json()


async def test_health_follows_the_database(outage: Outage) -> None:
    api, proxy = outage
    alice = await api.user("alice")
    assert await health(api) == (200, {"status": "ok"})

    await proxy.stop()
    for _ in range(3):
        assert await health(api) == (
            503,
            {"status": "unavailable", "message": "The storage is unavailable."},
        )
    # A cached access token needs no storage: the protected route keeps answering.
    response = await api.get("/api/test/user", alice["accessToken"])
    assert (response.status, await response.text()) == (200, "User Content.")

    await proxy.start()
    assert await health(api) == (200, {"status": "ok"})
    assert (await api.signin("alice")).status == 200


async def test_routes_that_need_the_storage_answer_503_and_recover(
    outage: Outage,
) -> None:
    api, proxy = outage
    alice = await api.user("alice")
    admin = await make_admin_token(api.app)
    access = {"x-access-token": alice["accessToken"]}
    password = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}

    async def attempts() -> list[Any]:
        client = api.client
        return [
            await api.signup("bob"),
            await api.signin("alice"),
            await api.refresh(alice["refreshToken"]),
            await client.post("/api/auth/password", json=password, headers=access),
            await api.get("/api/users/me", alice["accessToken"]),
            await client.delete("/api/users/nobody", headers={"x-access-token": admin}),
            await api.signout(alice["refreshToken"]),
        ]

    await proxy.stop()
    answers = await attempts()
    for response in answers:
        await expect_error(response, 503, UNAVAILABLE, "unavailable")
    response = await api.get("/api/test/user", alice["accessToken"])
    assert response.status == 200

    await proxy.start()
    recovered = [response.status for response in await attempts()]
    assert recovered == [201, 200, 200, 200, 200, 404, 200]
    metrics = Scrape.parse(await (await api.get("/metrics")).text())
    assert metrics.value("auth_error_answers_total", code="unavailable") == len(answers)
    assert api.app[keys.AUTH].health.problem is None


async def test_a_hung_database_answers_503_then_recovers(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    """The database accepts connections but does not answer (here: the users table
    locked by another session): requests answer 503 `unavailable` once
    `storage.command_timeout` has passed, instead of waiting for ever."""
    import asyncpg

    async with postgres_schema_dsn() as dsn:
        hung = {"command_timeout": 0.3, "acquire_timeout": 0.3}
        settings = make_settings(tmp_path, "postgres", dsn, storage=hung)
        api = Api(await aiohttp_client(create_app(settings)))
        alice = await api.user("alice")
        locker = await asyncpg.connect(dsn)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                for response in (
                    await api.signin("alice"),
                    await api.signup("bob"),
                    await api.get("/api/users/me", alice["accessToken"]),
                ):
                    await expect_error(response, 503, UNAVAILABLE, "unavailable")
        finally:
            await locker.close()
        assert (await api.signin("alice")).status == 200
        assert (await api.signup("bob")).status == 201
        await api.client.close()
