"""Auth embedded in a host app: the auth routes under the host's prefixes, guards on the
host's handlers, the host's own routes untouched, the lifecycle tied to the host app."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import Auth, clock, current_claims, requires
from storage import RevokeReason
from storage.memory import MemoryStorage
from tests.backends import POSTGRES_DSN, postgres_schema_dsn
from tests.conftest import PASSWORD, make_settings

HOST_HEADER = ("X-Host", "notes")
AUTH_HEADERS = ("X-Content-Type-Options", "Referrer-Policy")
POLL = 0.1


class SpyStorage(MemoryStorage):
    """The host's own storage object, watched: opened and closed with the host app."""

    def __init__(self) -> None:
        super().__init__(revocation_ttl=960)
        self.events: list[str] = []

    async def open(self) -> None:
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")


async def public(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    claims = auth.user(request)
    return web.Response(
        text=f"hello {claims.user_id if claims else 'stranger'}",
        headers=[HOST_HEADER],
    )


@requires()
async def guarded(request: web.Request) -> web.Response:
    return web.json_response(
        {"mine": current_claims(request).user_id}, headers=[HOST_HEADER]
    )


@Auth.requires("admin")
async def admin_only(request: web.Request) -> web.Response:
    return web.Response(text="admin things")


async def own_errors(request: web.Request) -> web.Response:
    return web.json_response(
        {"error": "the host's own format"}, status=422, headers=[HOST_HEADER]
    )


async def raises_not_found(request: web.Request) -> web.Response:
    raise web.HTTPNotFound(text="host says no")


AUTH = web.AppKey("auth", Auth)


def host_app(auth: Auth) -> web.Application:
    app = web.Application()
    app[AUTH] = auth
    app.router.add_get("/", public)
    app.router.add_get("/mine", guarded)
    app.router.add_get("/admin", admin_only)
    app.router.add_get("/fails", own_errors)
    app.router.add_get("/missing", raises_not_found)
    auth.setup(app, prefix="/auth", users_prefix="/account")
    return app


@pytest.fixture
async def host(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> tuple[TestClient, Auth, SpyStorage]:
    storage = SpyStorage()
    settings = make_settings(tmp_path, tokens={"revocation_poll": POLL})
    auth = Auth(settings, storage=storage)
    client = await aiohttp_client(host_app(auth))
    return client, auth, storage


async def _signed_in(client: TestClient, name: str = "alice") -> dict:
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    assert (await client.post("/auth/signup", json=body)).status == 201
    response = await client.post(
        "/auth/signin", json={"username": name, "password": PASSWORD}
    )
    assert response.status == 200
    return await response.json()


async def test_auth_routes_answer_under_the_host_prefixes(host: tuple) -> None:
    client, _, _ = host
    signed_in = await _signed_in(client)
    token = signed_in["accessToken"]
    me = await client.get("/account/me", headers={"x-access-token": token})
    assert (me.status, (await me.json())["username"]) == (200, "alice")
    refreshed = await client.post(
        "/auth/refreshtoken", json={"refreshToken": signed_in["refreshToken"]}
    )
    assert refreshed.status == 200
    signed_out = await client.post(
        "/auth/signout", json={"refreshToken": signed_in["refreshToken"]}
    )
    assert await signed_out.json() == {"message": "You've been signed out!"}
    # The default paths are not mounted: the host's own 404.
    missing = await client.post("/api/auth/signin", json={})
    assert missing.status == 404
    assert missing.content_type == "text/plain"
    document = await (await client.get("/api/openapi.json")).json()
    assert "/auth/signin" in document["paths"]
    assert "/account/me" in document["paths"]
    assert "/api/test/user" not in document["paths"]  # the seeds' demo content is not


async def test_auth_route_errors_keep_the_contract(host: tuple) -> None:
    client, _, _ = host
    response = await client.post(
        "/auth/signin", data="{", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await response.json())["code"] == "validation_error"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_guarded_host_routes(host: tuple) -> None:
    client, _, _ = host
    signed_in = await _signed_in(client)
    token = signed_in["accessToken"]

    missing = await client.get("/mine")
    assert missing.status == 403
    assert await missing.json() == {
        "message": "No token provided!",
        "code": "token_missing",
    }
    invalid = await client.get("/mine", headers={"Authorization": "Bearer x.y.z"})
    assert invalid.status == 401
    assert (await invalid.json())["code"] == "token_invalid"
    assert invalid.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    forbidden = await client.get("/admin", headers={"x-access-token": token})
    assert forbidden.status == 403
    assert await forbidden.json() == {
        "message": "Require Admin Role!",
        "code": "forbidden",
    }

    allowed = await client.get("/mine", headers={"Authorization": f"Bearer {token}"})
    assert (allowed.status, await allowed.json()) == (200, {"mine": signed_in["id"]})
    assert allowed.headers["X-Host"] == "notes"
    for name in (*AUTH_HEADERS, "Cache-Control"):
        assert name not in allowed.headers  # the host's answer, as the host made it


async def test_host_routes_are_untouched(host: tuple) -> None:
    client, _, _ = host
    signed_in = await _signed_in(client)
    stranger = await client.get("/", headers={"x-access-token": "not a token"})
    assert (stranger.status, await stranger.text()) == (200, "hello stranger")
    known = await client.get("/", headers={"x-access-token": signed_in["accessToken"]})
    assert await known.text() == f"hello {signed_in['id']}"
    own = await client.get("/fails")
    assert (own.status, await own.json()) == (422, {"error": "the host's own format"})
    raised = await client.get("/missing")
    assert (raised.status, await raised.text()) == (404, "host says no")
    unknown = await client.get("/nowhere")
    assert (unknown.status, await unknown.text()) == (404, "404: Not Found")
    for response in (stranger, own, raised, unknown):
        assert response.headers["Server"].startswith("Python/")  # not rewritten
        for name in (*AUTH_HEADERS, "Cache-Control"):
            assert name not in response.headers


async def test_lifecycle_follows_the_host_app(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    storage = SpyStorage()
    auth = Auth(
        make_settings(tmp_path, tokens={"revocation_poll": POLL}), storage=storage
    )
    client = await aiohttp_client(host_app(auth))
    assert storage.events == ["open"]
    signed_in = await _signed_in(client)
    token = signed_in["accessToken"]
    assert (await client.get("/mine", headers={"x-access-token": token})).status == 200
    # Another instance revokes the session (straight in the shared storage): the
    # background poll brings it to this one.
    digest = auth.refresh_tokens.digest(signed_in["refreshToken"])
    await storage.revoke_session(digest, RevokeReason.SIGNOUT, clock.epoch())
    for _ in range(100):
        response = await client.get("/mine", headers={"x-access-token": token})
        if response.status == 401:
            break
        await asyncio.sleep(POLL)
    assert (await response.json())["code"] == "token_revoked"
    await client.close()
    assert storage.events == ["open", "close"]


async def test_an_auth_is_set_up_once(tmp_path: Path) -> None:
    auth = Auth(make_settings(tmp_path))
    auth.setup(web.Application())
    with pytest.raises(RuntimeError, match="already set up"):
        auth.setup(web.Application())


def test_settings_from_a_mapping_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_TOKENS_ACCESS_TTL", "120")
    auth = Auth({"tokens": {"issuer": "notes"}, "storage": {"backend": "memory"}})
    assert auth.settings.tokens.issuer == "notes"
    assert auth.settings.tokens.access_ttl == 120
    assert auth.settings.storage.backend == "memory"


@pytest.mark.parametrize("host_limit", [1024, 1024 * 1024])
async def test_auth_routes_keep_the_servers_body_limit_whatever_the_hosts(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    tmp_path: Path,
    host_limit: int,
) -> None:
    """A host's client_max_size, smaller or larger, does not move the auth routes'
    limit (`server.max_body_bytes`, 16384 here): a 2 KB sign-up passes, 17 KB is 413."""
    auth = Auth(make_settings(tmp_path), storage=SpyStorage())
    app = web.Application(client_max_size=host_limit)
    auth.setup(app, prefix="/auth")
    client = await aiohttp_client(app)
    body = {"username": "padded", "email": "padded@example.com", "password": PASSWORD}
    padded = json.dumps(body) + " " * 2000
    accepted = await client.post(
        "/auth/signup", data=padded, headers={"Content-Type": "application/json"}
    )
    assert accepted.status == 201
    too_large = await client.post(
        "/auth/signup",
        data=json.dumps(body) + " " * 17000,
        headers={"Content-Type": "application/json"},
    )
    assert too_large.status == 413
    assert await too_large.json() == {
        "message": "Request body is larger than 16384 bytes",
        "code": "payload_too_large",
    }


@pytest.mark.skipif(
    not POSTGRES_DSN,
    reason="AUTH_TEST_POSTGRES_DSN is not set: PostgreSQL tests skipped",
)
async def test_a_hosts_asyncpg_pool_serves_the_auth_and_stays_open(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    """The host lends its own asyncpg pool: the auth's tables go into the pool's
    schema, a revocation made elsewhere arrives by LISTEN on a connection of that pool
    (the poll is an hour away), and the pool is still the host's, open, afterwards."""
    import asyncpg

    from storage.postgres import PostgresStorage

    async with postgres_schema_dsn() as dsn:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        try:
            storage = PostgresStorage.on_pool(pool, revocation_ttl=960)
            settings = make_settings(tmp_path, tokens={"revocation_poll": 3600})
            client = await aiohttp_client(host_app(Auth(settings, storage=storage)))
            signed_in = await _signed_in(client)
            assert await pool.fetchval("SELECT count(*) FROM users") == 1
            token = {"x-access-token": signed_in["accessToken"]}
            assert (await client.get("/mine", headers=token)).status == 200

            elsewhere = PostgresStorage(dsn, 960)
            await elsewhere.open()
            try:
                digest = hashlib.sha256(signed_in["refreshToken"].encode()).digest()
                revoked = await elsewhere.revoke_session(
                    digest, RevokeReason.SIGNOUT, int(clock.now())
                )
                assert revoked is not None and revoked.was_live
            finally:
                await elsewhere.close()
            assert await _status_within(client, "/mine", token, 401, seconds=5)

            await client.close()
            assert not pool._closed
            assert await pool.fetchval("SELECT count(*) FROM sessions") == 1
        finally:
            await pool.close()


async def _status_within(
    client: TestClient, path: str, headers: dict, status: int, seconds: float
) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if (await client.get(path, headers=headers)).status == status:
            return True
        await asyncio.sleep(0.05)
    return False
