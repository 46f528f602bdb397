"""WebSockets per user and per client address are capped (429 before the upgrade), and
a server shutdown closes the open ones with 1001 instead of dropping them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from server import keys
from server.websocket import OpenSockets
from tests.conftest import Api, MakeApi, expect_error

# The quotas are counted in memory: one backend shows them.
MEMORY_ONLY = pytest.mark.parametrize("backend", ["memory"])
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
PROXY = ("127.0.0.1",)
QUOTA_MESSAGE = "Too many requests. Try again in 5 seconds."


async def _socket(
    api: Api, token: str, address: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    headers = {"x-access-token": token}
    if address is not None:
        headers["X-Forwarded-For"] = address
    ws = await api.client.ws_connect("/api/ws", headers=headers)
    assert (await ws.receive_json())["type"] == "hello"
    return ws


async def _refused(api: Api, token: str, address: str | None = None) -> None:
    headers = {**UPGRADE, "x-access-token": token}
    if address is not None:
        headers["X-Forwarded-For"] = address
    response = await api.client.get("/api/ws", headers=headers)
    await expect_error(response, 429, QUOTA_MESSAGE, "rate_limited")
    assert response.headers["Retry-After"] == "5"


async def _until(condition: Callable[[], bool]) -> None:
    """The server releases a place when its side of the socket has ended."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the socket's place was not given back")


def _sockets(api: Api) -> OpenSockets:
    return api.app[keys.AUTH].sockets


@MEMORY_ONLY
async def test_one_user_holds_at_most_its_quota(make_api: MakeApi) -> None:
    api = await make_api(server={"max_websockets_per_user": 2})
    alice = await api.user("alice")
    bob = await api.user("bob")
    held = [await _socket(api, alice["accessToken"]) for _ in range(2)]
    await _refused(api, alice["accessToken"])
    # Another session of the same user counts too.
    again = await (await api.signin("alice")).json()
    await _refused(api, again["accessToken"])
    # Another user from the same address is not held back.
    other = await _socket(api, bob["accessToken"])
    sockets = _sockets(api)
    assert sockets.count(f"user:{alice['id']}") == 2
    assert sockets.count(f"user:{bob['id']}") == 1
    assert sockets.count("address:127.0.0.1") == 3
    # A closed socket gives its place back.
    await held[0].close()
    await _until(lambda: sockets.count(f"user:{alice['id']}") == 1)
    replacement = await _socket(api, again["accessToken"])
    for ws in (held[1], other, replacement):
        await ws.close()
    await _until(lambda: len(sockets) == 0)
    assert sockets.count("address:127.0.0.1") == 0


@MEMORY_ONLY
async def test_one_address_holds_at_most_its_quota(make_api: MakeApi) -> None:
    api = await make_api(
        server={"max_websockets_per_address": 2, "trusted_proxies": PROXY}
    )
    tokens = [(await api.user(f"user{n}"))["accessToken"] for n in range(4)]
    held = [
        await _socket(api, tokens[0], "198.51.100.7"),
        await _socket(api, tokens[1], "::ffff:198.51.100.7"),  # the same address
    ]
    await _refused(api, tokens[2], "198.51.100.7")
    # IPv6 clients are counted per /64, as by the rate limits.
    ipv6 = [
        await _socket(api, tokens[2], "2001:db8:1:2::1"),
        await _socket(api, tokens[3], "2001:db8:1:2::99"),
    ]
    await _refused(api, tokens[0], "2001:db8:1:2:ffff::1")
    # The client behind the proxy is counted, not the proxy.
    elsewhere = await _socket(api, tokens[2], "203.0.113.5")
    sockets = _sockets(api)
    assert sockets.count("address:198.51.100.7") == 2
    assert sockets.count("address:2001:db8:1:2::/64") == 2
    assert sockets.count("address:203.0.113.5") == 1
    assert sockets.count("address:127.0.0.1") == 0
    for ws in (*held, *ipv6, elsewhere):
        await ws.close()


@MEMORY_ONLY
async def test_a_plain_get_holds_no_place(make_api: MakeApi) -> None:
    """A request that is not an upgrade is refused by aiohttp after the quota check;
    its place is given back."""
    api = await make_api(server={"max_websockets_per_user": 1})
    alice = await api.user("alice")
    response = await api.get("/api/ws", alice["accessToken"])
    assert response.status == 400
    assert len(_sockets(api)) == 0
    ws = await _socket(api, alice["accessToken"])
    await ws.close()


@MEMORY_ONLY
async def test_shutdown_closes_open_sockets_with_going_away(make_api: MakeApi) -> None:
    api = await make_api()
    alice = await api.user("alice")
    bob = await api.user("bob")
    sockets = [
        await _socket(api, alice["accessToken"]),
        await _socket(api, bob["accessToken"]),
    ]
    shutdown = asyncio.ensure_future(api.client.server.close())
    for ws in sockets:
        message = await asyncio.wait_for(ws.receive(), timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        assert (message.data, message.extra) == (1001, "server shutdown")
    await asyncio.wait_for(shutdown, timeout=10)
    assert len(_sockets(api)) == 0


async def test_a_host_handler_gets_the_quota_as_an_http_error(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    """A host's own WebSocket handler (`auth.websocket`): the same 429, raised as an
    HTTP error in the contract's shape before the upgrade."""
    from aiohttp import web

    from server import Auth
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, server={"max_websockets_per_user": 1})
    auth = Auth(settings)

    async def live(request: web.Request) -> web.StreamResponse:
        socket = await auth.websocket(request)
        await socket.send_json({"type": "hello"})
        async for _ in socket:
            pass
        return socket.response

    app = web.Application()
    auth.setup(app)
    app.router.add_get("/live", live)
    api = Api(await aiohttp_client(app))
    assert (await api.signup("alice")).status == 201
    token = (await (await api.signin("alice")).json())["accessToken"]
    ws = await api.client.ws_connect("/live", headers={"x-access-token": token})
    assert await ws.receive_json() == {"type": "hello"}
    response = await api.client.get(
        "/live", headers={**UPGRADE, "x-access-token": token}
    )
    await expect_error(response, 429, QUOTA_MESSAGE, "rate_limited")
    assert response.headers["Retry-After"] == "5"
    await ws.close()


async def test_a_host_handler_that_raises_after_the_upgrade_gives_its_place_back(
    aiohttp_client: Any, tmp_path: Any
) -> None:
    """aiohttp does not mark such a response closed, so only the handler's end can
    tell: without that, each failure would hold a place until the token expired."""
    from aiohttp import web

    from server import Auth
    from tests.conftest import make_settings

    settings = make_settings(
        tmp_path,
        tokens={"revocation_poll": 0.1},
        server={"max_websockets_per_user": 2},
    )
    auth = Auth(settings)

    async def fails_after_the_upgrade(request: web.Request) -> web.StreamResponse:
        await auth.websocket(request)
        raise RuntimeError("the host's handler has a bug")

    app = web.Application()
    auth.setup(app)
    app.router.add_get("/live", fails_after_the_upgrade)
    api = Api(await aiohttp_client(app))
    assert (await api.signup("alice")).status == 201
    token = (await (await api.signin("alice")).json())["accessToken"]
    for _ in range(3):  # one more than the quota
        ws = await api.client.ws_connect("/live", headers={"x-access-token": token})
        await ws.receive()
        await ws.close()
        await _until(lambda: len(auth.sockets) == 0)
    assert auth.sockets.count("address:127.0.0.1") == 0
