"""GET /api/ws: authenticated before the upgrade, closed (4401) when its session ends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from server import clock
from tests.conftest import TEST_SECRET, Api, MakeApi
from tests.serverproc import ServerProcess, server_env

POLL = 0.1
TTL = 60


@pytest.fixture
async def ws_api(make_api: MakeApi) -> Api:
    return await make_api(tokens={"revocation_poll": POLL, "access_ttl": TTL})


async def _connect(
    api: Api, token: str, **kwargs: object
) -> aiohttp.ClientWebSocketResponse:
    return await api.client.ws_connect(
        "/api/ws", headers={"x-access-token": token}, **kwargs
    )


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    message = await asyncio.wait_for(ws.receive(), timeout=5)
    assert message.type is aiohttp.WSMsgType.CLOSE, message
    return message.data, message.extra


async def test_hello_then_echo(ws_api: Api) -> None:
    signed_in = await ws_api.user()
    ws = await _connect(ws_api, signed_in["accessToken"])
    hello = await ws.receive_json()
    assert hello["type"] == "hello"
    assert hello["userId"] == signed_in["id"]
    assert isinstance(hello["sessionId"], str) and hello["sessionId"]
    for text in ("hi", '{"type": "other"}', "ünïcode ✓"):
        await ws.send_str(text)
        assert await ws.receive_json() == {"type": "echo", "data": text}
    await ws.close()


async def test_token_in_query_string(ws_api: Api) -> None:
    signed_in = await ws_api.user()
    ws = await ws_api.client.ws_connect(
        f"/api/ws?access_token={signed_in['accessToken']}"
    )
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 403, "token_missing"),
        ({"x-access-token": "garbage"}, 401, "token_invalid"),
    ],
)
async def test_refused_before_the_upgrade(
    ws_api: Api, headers: dict[str, str], status: int, code: str
) -> None:
    response = await ws_api.client.get(
        "/api/ws",
        headers={
            **headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert response.status == status
    assert (await response.json())["code"] == code


async def test_closed_on_signout(ws_api: Api) -> None:
    signed_in = await ws_api.user()
    ws = await _connect(ws_api, signed_in["accessToken"])
    await ws.receive_json()
    assert (await ws_api.signout(signed_in["refreshToken"])).status == 200
    assert await _closed(ws) == (4401, "session revoked")


async def test_closed_at_expiry_without_reauth(ws_api: Api) -> None:
    signed_in = await ws_api.user()
    ws = await _connect(ws_api, signed_in["accessToken"])
    await ws.receive_json()
    clock.advance(TTL - 5)
    await ws.send_str("still here")
    assert (await ws.receive_json())["data"] == "still here"
    clock.advance(6)
    assert await _closed(ws) == (4401, "token expired")


async def test_reauth_with_a_newer_token_keeps_it_open(ws_api: Api) -> None:
    signed_in = await ws_api.user()
    ws = await _connect(ws_api, signed_in["accessToken"])
    await ws.receive_json()
    clock.advance(TTL / 2)
    refreshed = await (await ws_api.refresh(signed_in["refreshToken"])).json()
    await ws.send_str(
        json.dumps({"type": "reauth", "accessToken": refreshed["accessToken"]})
    )
    await ws.send_str(
        "sync"
    )  # frames are handled in order: once echoed, reauth is done
    assert (await ws.receive_json())["data"] == "sync"
    clock.advance(TTL / 2 + 5)  # the first token has expired, the newer one has not
    await ws.send_str("after reauth")
    assert await ws.receive_json() == {"type": "echo", "data": "after reauth"}
    clock.advance(TTL / 2)
    assert await _closed(ws) == (4401, "token expired")


@pytest.mark.parametrize("which", ["invalid", "other session"])
async def test_bad_reauth_closes(ws_api: Api, which: str) -> None:
    signed_in = await ws_api.user()
    other = await (await ws_api.signin(signed_in["username"])).json()
    token = "not-a-token" if which == "invalid" else other["accessToken"]
    ws = await _connect(ws_api, signed_in["accessToken"])
    await ws.receive_json()
    await ws.send_str(json.dumps({"type": "reauth", "accessToken": token}))
    code, _ = await _closed(ws)
    assert code == 4401


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_closed_when_another_process_revokes(
    make_api: MakeApi, tmp_path: Path
) -> None:
    """A server process on the same database signs the session out; this process's
    socket closes within the poll interval."""
    api = await make_api(tokens={"revocation_poll": POLL})
    signed_in = await api.user()
    env = server_env(
        tmp_path,
        AUTH_TOKENS_SECRET=TEST_SECRET,
        AUTH_STORAGE_PATH=str(tmp_path / "data" / "auth.db"),
    )
    ws = await _connect(api, signed_in["accessToken"])
    await ws.receive_json()
    with ServerProcess(env) as other:
        status, _ = await asyncio.to_thread(
            other.request,
            "POST",
            "/api/auth/signout",
            {"refreshToken": signed_in["refreshToken"]},
        )
        assert status == 200
        assert await _closed(ws) == (4401, "session revoked")
