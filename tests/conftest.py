"""Fixtures: settings for tests (low bcrypt cost, rate limits off), the real app on every
storage backend, and a small client wrapper speaking the contract."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import clock, create_app
from server.events import reset_events
from server.settings import (
    PasswordSettings,
    PurgeSettings,
    RateLimitSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    TokenSettings,
)
from tests.backends import BACKENDS, postgres_schema_dsn

TEST_SECRET = "test-secret-of-at-least-32-bytes-for-hs256"
PASSWORD = "correct horse battery staple"


def make_settings(
    tmp_path: Path, backend: str = "memory", dsn: str = "", **sections: Any
) -> Settings:
    """Test settings; `sections` override fields per section, e.g. tokens={"access_ttl": 1}."""
    base = Settings(
        server=ServerSettings(),
        storage=StorageSettings(
            backend=backend, path=str(tmp_path / "data" / "auth.db"), dsn=dsn
        ),
        tokens=TokenSettings(secret=TEST_SECRET),
        passwords=PasswordSettings(bcrypt_rounds=4, hash_workers=2),
        ratelimit=RateLimitSettings(enabled=False),
        purge=PurgeSettings(interval=3600),
    )
    changes = {
        name: dataclasses.replace(getattr(base, name), **fields)
        for name, fields in sections.items()
    }
    return dataclasses.replace(base, **changes)


class Api:
    """The contract's calls, so tests read as the flows they check."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.app = client.app
        self._counter = 0

    async def signup(
        self,
        username: str | None = None,
        *,
        email: str | None = None,
        password: str = PASSWORD,
        roles: list[str] | None = None,
        token: str | None = None,
    ) -> Any:
        if username is None:
            self._counter += 1
            username = f"user{self._counter}"
        body: dict[str, Any] = {
            "username": username,
            "email": email or f"{username}@example.com",
            "password": password,
        }
        if roles is not None:
            body["roles"] = roles
        headers = {"x-access-token": token} if token else {}
        return await self.client.post("/api/auth/signup", json=body, headers=headers)

    async def signin(
        self, username: str, password: str = PASSWORD, **extra: str
    ) -> Any:
        body = {"username": username, "password": password, **extra}
        return await self.client.post("/api/auth/signin", json=body)

    async def user(
        self, username: str | None = None, roles: list[str] | None = None
    ) -> dict:
        """Sign up (roles beyond `user` through an admin token made by
        `make_admin_token`), sign in, and return the sign-in body."""
        response = await self.signup(
            username, roles=roles, token=await self._admin_token(roles)
        )
        assert response.status == 201, await response.text()
        name = username or f"user{self._counter}"
        signed_in = await self.signin(name)
        assert signed_in.status == 200
        return await signed_in.json()

    async def _admin_token(self, roles: list[str] | None) -> str | None:
        if not roles or roles == ["user"]:
            return None
        return await make_admin_token(self.app)

    async def refresh(self, refresh_token: Any, **headers: str) -> Any:
        return await self.client.post(
            "/api/auth/refreshtoken",
            json={"refreshToken": refresh_token},
            headers=headers,
        )

    async def signout(self, refresh_token: Any) -> Any:
        return await self.client.post(
            "/api/auth/signout", json={"refreshToken": refresh_token}
        )

    async def get(self, path: str, token: str | None = None, **headers: str) -> Any:
        if token is not None:
            headers["x-access-token"] = token
        return await self.client.get(path, headers=headers)


async def make_admin_token(app: web.Application) -> str:
    """An admin's access token, made directly in storage: the way `run.py create-user`
    bootstraps the first admin."""
    from server import keys
    from storage import NewSession, User

    storage = app[keys.AUTH].storage
    admin = await storage.find_user(username="root-admin")
    if admin is None:
        password_hash = await app[keys.AUTH].passwords.hash(PASSWORD)
        admin = User(
            "admin-id",
            "root-admin",
            "root@example.com",
            password_hash,
            ("user", "admin"),
            0,
        )
        await storage.create_user(admin)
    session_id = secrets.token_hex(16)
    token_hash = app[keys.AUTH].refresh_tokens.digest(secrets.token_urlsafe(32))
    session = NewSession(session_id, admin.id, token_hash, 0, 2**40)
    assert await storage.create_session(session, admin.password_hash)
    return app[keys.AUTH].access_tokens.issue(admin, session_id)


async def expect_error(
    response: Any, status: int, message: str | None, code: str
) -> dict:
    """Assert the contract's error shape exactly."""
    body = await response.json()
    assert (response.status, body.get("code")) == (status, code), body
    if message is not None:
        assert body["message"] == message
    assert set(body) == {"message", "code"}
    return body


@pytest.fixture(autouse=True)
def _real_time() -> Iterator[None]:
    """Tests move the server's clock with `clock.advance`; each starts on real time,
    with no security-event summary window open from an earlier test."""
    clock.reset()
    reset_events()
    yield
    clock.reset()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, backend: str
) -> AsyncIterator[MakeApi]:
    """Build the real app on the parametrized backend with per-section overrides."""
    async with _database(backend) as dsn:

        async def build(**sections: Any) -> Api:
            settings = make_settings(tmp_path, backend, dsn, **sections)
            return Api(await aiohttp_client(create_app(settings)))

        yield build


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


def _database(backend: str) -> Any:
    """A fresh PostgreSQL schema per test, or nothing for the other backends."""
    return (
        postgres_schema_dsn() if backend == "postgres" else contextlib.nullcontext("")
    )
