"""The Python client (`authclient`) against a live server process, through a counting
proxy: sign-up, sign-in, authenticated calls, one refresh for many simultaneous 401s,
adoption of the rotated refresh token, retry once, a refused refresh, sign-out.

The server runs with a 2 s access TTL, strict rotation and no reuse grace, so a client
that refreshed twice or presented a retired token would be caught by the server too; the
proxy counts the refresh requests themselves."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from authclient import (
    ApiError,
    AuthClient,
    NotSignedIn,
    SessionExpired,
    Tokens,
    User,
)
from tests.countingproxy import CountingProxy, Exchange
from tests.serverproc import ROOT, ServerProcess, server_env

PASSWORD = "correct horse battery staple"
CONCURRENT = 20
EXPIRED = {
    "message": "Unauthorized! Access Token was expired!",
    "code": "token_expired",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = server_env(
        tmp_path_factory.mktemp("client"),
        AUTH_STORAGE_BACKEND="memory",
        AUTH_TOKENS_ACCESS_TTL="2",
        AUTH_TOKENS_LEEWAY="0",
        AUTH_TOKENS_STRICT_ROTATION="true",
        AUTH_TOKENS_REUSE_INTERVAL="0",
    )
    with ServerProcess(env) as process:
        yield process


@pytest.fixture
async def proxy(
    server: ServerProcess,
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
) -> CountingProxy:
    proxy = CountingProxy(server.url)
    proxy.url = str((await aiohttp_server(proxy.app)).make_url(""))  # type: ignore[attr-defined]
    return proxy


@pytest.fixture
async def client(proxy: CountingProxy) -> AsyncIterator[AuthClient]:
    async with AuthClient(proxy.url) as client:  # type: ignore[attr-defined]
        yield client


async def signed_up_and_in(client: AuthClient, username: str) -> User:
    await client.signup(username, f"{username}@example.com", PASSWORD)
    return await client.signin(username=username, password=PASSWORD)


async def raw_post(server: ServerProcess, path: str, body: dict) -> tuple[int, dict]:
    """Straight to the server, past the client and the proxy."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + path, json=body) as response,
    ):
        return response.status, await response.json()


async def sleep_past_expiry(access_token: str) -> None:
    """Sleep until the token's own `exp` has passed: once per test, at most the TTL."""
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    await asyncio.sleep(max(0.0, claims["exp"] - time.time()) + 0.05)


def lined_up(
    count: int, path: str, token: str
) -> Callable[[Exchange], Awaitable[None]]:
    """A proxy hook holding the calls to `path` made with `token` until `count` of them
    have arrived: they then reach the server, and fail, together."""
    barrier = asyncio.Barrier(count)

    async def hook(exchange: Exchange) -> None:
        if exchange.path == path and exchange.bearer == token:
            await asyncio.wait_for(barrier.wait(), timeout=10)

    return hook


async def test_signup_signin_and_authenticated_calls(
    client: AuthClient, proxy: CountingProxy
) -> None:
    user_id = await client.signup("carol", "carol@example.com", PASSWORD)
    user = await client.signin(username="carol", password=PASSWORD)

    assert user == User(user_id, "carol", "carol@example.com", ("ROLE_USER",))
    assert client.signed_in
    assert (await client.get("/api/test/user")).text() == "User Content."
    me = (await client.get("/api/users/me")).json()
    assert (me["id"], me["username"]) == (user_id, "carol")
    assert proxy.to("GET", "/api/test/user")[0].bearer == client.tokens.access
    with pytest.raises(ApiError) as forbidden:
        await client.get("/api/test/mod")
    assert (forbidden.value.status, forbidden.value.code, forbidden.value.message) == (
        403,
        "forbidden",
        "Require Moderator Role!",
    )
    assert proxy.refreshes() == []


async def test_signin_by_email_and_refused_credentials(
    client: AuthClient, proxy: CountingProxy
) -> None:
    await client.signup("dave", "dave@example.com", PASSWORD)
    with pytest.raises(ApiError) as taken:
        await client.signup("Dave", "other@example.com", PASSWORD)
    assert (taken.value.status, taken.value.code) == (409, "username_taken")
    with pytest.raises(ValueError, match="exactly one of username and email"):
        await client.signin(
            username="dave", email="dave@example.com", password=PASSWORD
        )
    user = await client.signin(email="dave@example.com", password=PASSWORD)
    assert user.username == "dave"
    tokens = client.tokens

    with pytest.raises(ApiError) as refused:
        await client.signin(username="dave", password="wrong password!")

    assert (refused.value.status, refused.value.code, refused.value.message) == (
        401,
        "invalid_credentials",
        "Invalid username or password.",
    )
    assert proxy.refreshes() == []  # a 401 at sign-in is no cue to refresh
    assert proxy.to("POST", "/api/auth/signin")[-1].bearer is None
    assert client.tokens == tokens  # the failed sign-in left the current one alone
    assert (await client.get("/api/test/user")).text() == "User Content."


async def test_many_401s_share_one_refresh_and_a_late_one_just_retries(
    client: AuthClient, proxy: CountingProxy, server: ServerProcess
) -> None:
    await signed_up_and_in(client, "erin")
    original = client.tokens
    await client.refresh()  # retires the sign-in's refresh token before the sleep
    first = client.tokens
    assert original is not None and first is not None
    await sleep_past_expiry(first.access)  # also past the retired token's grace second

    # A call made with the expired token whose 401 comes back only after the refresh.
    arrived, release = asyncio.Event(), asyncio.Event()
    batch = lined_up(CONCURRENT, "/api/test/user", first.access)

    async def hook(exchange: Exchange) -> None:
        if exchange.path == "/api/users/me" and exchange.bearer == first.access:
            arrived.set()
            await asyncio.wait_for(release.wait(), timeout=10)
        await batch(exchange)

    proxy.hook = hook
    late = asyncio.create_task(client.get("/api/users/me"))
    await asyncio.wait_for(arrived.wait(), timeout=10)

    answers = await asyncio.gather(
        *(client.get("/api/test/user") for _ in range(CONCURRENT))
    )

    assert [a.text() for a in answers] == ["User Content."] * CONCURRENT
    [explicit, refresh] = proxy.refreshes()  # exactly one for the 20 failed calls
    assert explicit.json() == {"refreshToken": original.refresh}
    assert refresh.json() == {"refreshToken": first.refresh}  # the adopted successor
    assert refresh.status == 200
    current = client.tokens
    assert current == Tokens(
        refresh.answer_json()["accessToken"], refresh.answer_json()["refreshToken"]
    )
    assert current.refresh != first.refresh
    calls = proxy.to("GET", "/api/test/user")
    assert [(c.bearer, c.status) for c in calls] == [
        (first.access, 401)
    ] * CONCURRENT + [(current.access, 200)] * CONCURRENT
    assert calls[0].answer_json() == EXPIRED

    release.set()
    assert (await late).json()["username"] == "erin"
    assert len(proxy.refreshes()) == 2  # the late 401 did not refresh again
    assert [(c.bearer, c.status) for c in proxy.to("GET", "/api/users/me")] == [
        (first.access, 401),
        (current.access, 200),
    ]
    # Its successor presented, the sign-in's refresh token is now reuse (strict server).
    status, body = await raw_post(
        server, "/api/auth/refreshtoken", {"refreshToken": original.refresh}
    )
    assert (status, body["code"]) == (403, "refresh_reused")


async def test_each_refresh_presents_the_previous_successor(
    client: AuthClient, proxy: CountingProxy
) -> None:
    await signed_up_and_in(client, "frank")
    chain = [client.tokens]
    for _ in range(3):
        await client.refresh()
        chain.append(client.tokens)

    assert None not in chain and len({t.refresh for t in chain}) == 4
    assert [r.json()["refreshToken"] for r in proxy.refreshes()] == [
        t.refresh for t in chain[:-1]
    ]
    assert [r.answer_json()["refreshToken"] for r in proxy.refreshes()] == [
        t.refresh for t in chain[1:]
    ]
    assert (await client.get("/api/test/user")).text() == "User Content."
    assert proxy.exchanges[-1].bearer == chain[-1].access


async def test_a_call_still_refused_after_the_refresh_raises(
    client: AuthClient, proxy: CountingProxy
) -> None:
    await signed_up_and_in(client, "grace")

    async def always_401(exchange: Exchange) -> web.Response | None:
        if exchange.path != "/always-401":
            return None
        if len(proxy.to("GET", "/always-401")) > 2:
            return web.json_response({"third": "time"})  # a looping client stops here
        return web.json_response(
            {"message": "Unauthorized!", "code": "token_invalid"}, status=401
        )

    proxy.hook = always_401
    with pytest.raises(ApiError) as refused:
        await client.get("/always-401")

    assert type(refused.value) is ApiError
    assert (refused.value.status, refused.value.code, refused.value.message) == (
        401,
        "token_invalid",
        "Unauthorized!",
    )
    assert len(proxy.to("GET", "/always-401")) == 2  # the call and one retry
    assert len(proxy.refreshes()) == 1
    assert client.signed_in
    assert (await client.get("/api/test/user")).text() == "User Content."
    assert len(proxy.refreshes()) == 1


async def test_a_refused_refresh_fails_every_waiting_call_and_forgets_the_tokens(
    client: AuthClient, proxy: CountingProxy, server: ServerProcess
) -> None:
    await signed_up_and_in(client, "heidi")
    tokens = client.tokens
    assert tokens is not None
    # Revoked behind the client's back (another device signing this session out).
    assert (
        await raw_post(server, "/api/auth/signout", {"refreshToken": tokens.refresh})
    )[0] == 200
    batch = lined_up(5, "/api/test/user", tokens.access)
    arrived, release = asyncio.Event(), asyncio.Event()

    async def hook(exchange: Exchange) -> None:
        if exchange.path == "/api/users/me":  # answered only after the refusal
            arrived.set()
            await asyncio.wait_for(release.wait(), timeout=10)
        await batch(exchange)

    proxy.hook = hook
    late = asyncio.create_task(client.get("/api/users/me"))
    await asyncio.wait_for(arrived.wait(), timeout=10)
    outcomes = await asyncio.gather(
        *(client.get("/api/test/user") for _ in range(5)), return_exceptions=True
    )
    release.set()
    outcomes += await asyncio.gather(late, return_exceptions=True)

    assert all(type(o) is SessionExpired for o in outcomes), outcomes
    assert {(o.status, o.code, o.message) for o in outcomes} == {
        (
            403,
            "refresh_revoked",
            "Refresh token was revoked. Please make a new signin request",
        )
    }
    assert len(proxy.refreshes()) == 1
    assert [c.answer_json()["code"] for c in proxy.to("GET", "/api/test/user")] == [
        "token_revoked"
    ] * 5
    [me] = proxy.to("GET", "/api/users/me")
    assert (me.bearer, me.answer_json()["code"]) == (tokens.access, "token_revoked")
    assert not client.signed_in and client.tokens is None
    with pytest.raises(NotSignedIn):
        await client.refresh()
    with pytest.raises(ApiError) as anonymous:
        await client.get("/api/test/user")
    assert (anonymous.value.status, anonymous.value.code) == (403, "token_missing")
    assert proxy.exchanges[-1].bearer is None
    assert len(proxy.refreshes()) == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_refresh(
    client: AuthClient, proxy: CountingProxy
) -> None:
    await signed_up_and_in(client, "ivan")
    tokens = client.tokens
    assert tokens is not None
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_refresh(exchange: Exchange) -> None:
        if exchange.path == "/api/auth/refreshtoken":
            started.set()
            await asyncio.wait_for(release.wait(), timeout=10)

    proxy.hook = slow_refresh
    first = asyncio.create_task(client.refresh())
    second = asyncio.create_task(client.refresh())
    await asyncio.wait_for(started.wait(), timeout=10)
    first.cancel()
    release.set()

    await second
    assert first.cancelled()
    assert len(proxy.refreshes()) == 1
    assert client.tokens is not None and client.tokens.refresh != tokens.refresh


async def test_signout_revokes_the_session(
    client: AuthClient, proxy: CountingProxy, server: ServerProcess
) -> None:
    await signed_up_and_in(client, "judy")
    tokens = client.tokens
    assert tokens is not None

    await client.signout()
    await client.signout()  # nothing left to sign out: no request

    [signout] = proxy.to("POST", "/api/auth/signout")
    assert (signout.json(), signout.status) == ({"refreshToken": tokens.refresh}, 200)
    assert not client.signed_in
    status, body = await raw_post(
        server, "/api/auth/refreshtoken", {"refreshToken": tokens.refresh}
    )
    assert (status, body["code"]) == (403, "refresh_revoked")
    assert (await client.get("/api/test/all")).text() == "Public Content."
    assert proxy.exchanges[-1].bearer is None


async def test_only_relative_paths_get_the_token(client: AuthClient) -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        await client.get("http://elsewhere.example/api")


def test_the_package_imports_nothing_of_the_server() -> None:
    code = (
        "import sys, authclient; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'server', 'storage', 'jwt', 'pydantic', 'bcrypt', 'asyncpg', 'aiosqlite'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(ROOT),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "[]"
