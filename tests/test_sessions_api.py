"""A user's devices (API.md "Sessions: a user's devices"): list the live sessions, revoke
one, revoke all the others; on every backend."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiohttp

from server import clock
from tests.conftest import PASSWORD, Api, expect_error, make_admin_token

REFRESH_TTL = 30 * 86400  # the default tokens.refresh_ttl
SESSION_KEYS = {
    "id",
    "current",
    "createdAt",
    "lastUsedAt",
    "expiresAt",
    "userAgent",
    "ip",
}
NOT_FOUND = ("Session not found.", "not_found")


def epoch(iso: str) -> int:
    assert iso.endswith("Z") and len(iso) == 20, iso
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S%z").timestamp())


async def sign_in(api: Api, username: str, agent: str | None = "test-agent") -> dict:
    """A new session of `username` from a device with this User-Agent (None: none)."""
    response = await api.client.post(
        "/api/auth/signin",
        json={"username": username, "password": PASSWORD},
        headers={"User-Agent": agent} if agent is not None else {},
        skip_auto_headers=["User-Agent"],
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def sessions_of(api: Api, access_token: str) -> list[dict[str, Any]]:
    response = await api.get("/api/auth/sessions", access_token)
    body = await response.json()
    assert response.status == 200, body
    assert set(body) == {"sessions"}
    for session in body["sessions"]:
        assert set(session) == SESSION_KEYS
    return body["sessions"]


async def revoke(api: Api, access_token: str, session_id: str) -> Any:
    return await api.client.delete(
        f"/api/auth/sessions/{session_id}", headers={"x-access-token": access_token}
    )


async def revoke_others(api: Api, access_token: str) -> Any:
    return await api.client.delete(
        "/api/auth/sessions", headers={"x-access-token": access_token}
    )


async def expect_revoked(api: Api, signed_in: dict) -> None:
    """The session's access token is refused at once and its refresh token too."""
    await expect_error(
        await api.get("/api/test/user", signed_in["accessToken"]),
        401,
        "Unauthorized!",
        "token_revoked",
    )
    await expect_error(
        await api.refresh(signed_in["refreshToken"]),
        403,
        "Refresh token was revoked. Please make a new signin request",
        "refresh_revoked",
    )


async def expect_live(api: Api, signed_in: dict) -> None:
    assert (await api.get("/api/test/user", signed_in["accessToken"])).status == 200


def session_id(signed_in: dict) -> str:
    """The `sid` of a sign-in's access token."""
    import jwt

    return jwt.decode(signed_in["accessToken"], options={"verify_signature": False})[
        "sid"
    ]


# GET /api/auth/sessions


async def test_list_shows_each_device_newest_first(api: Api) -> None:
    assert (await api.signup("alice")).status == 201
    started = clock.epoch()
    laptop = await sign_in(api, "alice", "Mozilla/5.0 (laptop)")
    clock.advance(60)
    phone = await sign_in(api, "alice", None)
    listed = await sessions_of(api, phone["accessToken"])
    assert [s["id"] for s in listed] == [session_id(phone), session_id(laptop)]
    assert [s["current"] for s in listed] == [True, False]
    assert [s["userAgent"] for s in listed] == [None, "Mozilla/5.0 (laptop)"]
    assert [s["ip"] for s in listed] == ["127.0.0.1", "127.0.0.1"]
    newest, oldest = listed
    assert started <= epoch(oldest["createdAt"]) <= started + 1
    assert epoch(newest["createdAt"]) - epoch(oldest["createdAt"]) in (60, 61)
    for session in listed:
        assert session["lastUsedAt"] == session["createdAt"]
        assert epoch(session["expiresAt"]) == epoch(session["lastUsedAt"]) + REFRESH_TTL
    # The same list from the other device, with `current` on its own session.
    from_laptop = await sessions_of(api, laptop["accessToken"])
    assert [s["current"] for s in from_laptop] == [False, True]
    assert [s["id"] for s in from_laptop] == [s["id"] for s in listed]


async def test_a_refresh_moves_last_use_and_expiry(api: Api) -> None:
    signed_in = await api.user("alice")
    (before,) = await sessions_of(api, signed_in["accessToken"])
    clock.advance(3600)
    refreshed = await api.refresh(signed_in["refreshToken"])
    assert refreshed.status == 200
    (after,) = await sessions_of(api, (await refreshed.json())["accessToken"])
    assert (after["id"], after["createdAt"]) == (before["id"], before["createdAt"])
    assert epoch(after["lastUsedAt"]) - epoch(before["lastUsedAt"]) in (3600, 3601)
    assert epoch(after["expiresAt"]) == epoch(after["lastUsedAt"]) + REFRESH_TTL


async def test_only_live_sessions_of_the_caller_are_listed(make_api: Any) -> None:
    api = await make_api(tokens={"refresh_ttl": 600})
    signed_out = await api.user("alice")
    expiring = await sign_in(api, "alice")
    await api.user("bob")  # another user's session is never listed
    assert (await api.signout(signed_out["refreshToken"])).status == 200
    clock.advance(601)  # `expiring` has ended; sign in again for a live token
    current = await sign_in(api, "alice")
    listed = await sessions_of(api, current["accessToken"])
    assert [s["id"] for s in listed] == [session_id(current)]
    assert session_id(expiring) != session_id(current)


async def test_unknown_device_details_are_null(api: Api) -> None:
    """A session started without a request (the admin token helper) has no address
    and no User-Agent."""
    token = await make_admin_token(api.app)
    (session,) = await sessions_of(api, token)
    assert (session["current"], session["userAgent"], session["ip"]) == (
        True,
        None,
        None,
    )


async def test_the_routes_need_a_token(api: Api) -> None:
    calls = [
        api.client.get("/api/auth/sessions"),
        api.client.delete("/api/auth/sessions/anything"),
        api.client.delete("/api/auth/sessions"),
    ]
    for call in calls:
        await expect_error(await call, 403, "No token provided!", "token_missing")
    for method in ("GET", "DELETE"):
        response = await api.client.request(
            method, "/api/auth/sessions", headers={"x-access-token": "not-a-jwt"}
        )
        await expect_error(response, 401, "Unauthorized!", "token_invalid")


# DELETE /api/auth/sessions/{id}


async def test_revoking_another_device_ends_it_at_once(api: Api) -> None:
    stolen = await api.user("alice")
    here = await sign_in(api, "alice")
    response = await revoke(api, here["accessToken"], session_id(stolen))
    assert (response.status, await response.json()) == (
        200,
        {"message": "Session revoked."},
    )
    await expect_revoked(api, stolen)
    await expect_live(api, here)
    listed = await sessions_of(api, here["accessToken"])
    assert [s["id"] for s in listed] == [session_id(here)]
    # Revoked is no longer live: not found, like any id that is not the caller's.
    await expect_error(
        await revoke(api, here["accessToken"], session_id(stolen)), 404, *NOT_FOUND
    )


async def test_unknown_and_foreign_sessions_are_not_found(api: Api) -> None:
    alice = await api.user("alice")
    bob = await api.user("bob")
    for unknown in ("0" * 32, "nope", "%00", "x" * 300):
        await expect_error(
            await revoke(api, alice["accessToken"], unknown), 404, *NOT_FOUND
        )
    await expect_error(
        await revoke(api, alice["accessToken"], session_id(bob)), 404, *NOT_FOUND
    )
    await expect_live(api, bob)
    assert (await api.refresh(bob["refreshToken"])).status == 200


async def test_an_expired_session_is_not_found(make_api: Any) -> None:
    api = await make_api(tokens={"refresh_ttl": 600})
    old = await api.user("alice")
    clock.advance(601)
    current = await sign_in(api, "alice")
    await expect_error(
        await revoke(api, current["accessToken"], session_id(old)), 404, *NOT_FOUND
    )


async def test_revoking_the_current_session_signs_out(api: Api) -> None:
    signed_in = await api.user("alice")
    response = await revoke(api, signed_in["accessToken"], session_id(signed_in))
    assert response.status == 200
    await expect_revoked(api, signed_in)


# DELETE /api/auth/sessions


async def test_revoking_the_others_keeps_this_one(api: Api) -> None:
    first = await api.user("alice")
    second = await sign_in(api, "alice")
    here = await sign_in(api, "alice")
    bob = await api.user("bob")
    response = await revoke_others(api, here["accessToken"])
    assert (response.status, await response.json()) == (
        200,
        {"message": "Other sessions revoked.", "revoked": 2},
    )
    for other in (first, second):
        await expect_revoked(api, other)
    await expect_live(api, here)
    await expect_live(api, bob)
    assert (await api.refresh(here["refreshToken"])).status == 200
    assert [s["id"] for s in await sessions_of(api, here["accessToken"])] == [
        session_id(here)
    ]
    again = await revoke_others(api, here["accessToken"])
    assert (again.status, await again.json()) == (
        200,
        {"message": "Other sessions revoked.", "revoked": 0},
    )


async def test_a_revoked_session_cannot_revoke(api: Api) -> None:
    """The revocation holds in this process at once: the revoked device's token can no
    longer reach these routes either."""
    victim = await api.user("alice")
    thief = await sign_in(api, "alice")
    assert (await revoke(api, victim["accessToken"], session_id(thief))).status == 200
    for response in (
        await revoke_others(api, thief["accessToken"]),
        await revoke(api, thief["accessToken"], session_id(victim)),
        await api.get("/api/auth/sessions", thief["accessToken"]),
    ):
        await expect_error(response, 401, "Unauthorized!", "token_revoked")
    await expect_live(api, victim)


async def test_a_revoked_sessions_websocket_is_closed(make_api: Any) -> None:
    api = await make_api(tokens={"revocation_poll": 0.1})
    laptop = await api.user("alice")
    phone = await sign_in(api, "alice")
    ws = await api.client.ws_connect(
        "/api/ws", headers={"x-access-token": laptop["accessToken"]}
    )
    assert (await ws.receive_json())["type"] == "hello"
    assert (await revoke_others(api, phone["accessToken"])).status == 200
    closed = await asyncio.wait_for(ws.receive(), timeout=5)  # a bound, not a timing
    assert (closed.type, closed.data, closed.extra) == (
        aiohttp.WSMsgType.CLOSE,
        4401,
        "session revoked",
    )


async def test_sessions_started_in_one_second_are_listed_newest_first(
    api: Api,
) -> None:
    await api.signup("quick")
    clock.advance(0.5 - clock.now() % 1)  # all four sign-ins within this second
    started = [await sign_in(api, "quick", agent=f"device-{n}") for n in range(4)]
    listed = await api.client.get(
        "/api/auth/sessions", headers={"x-access-token": started[-1]["accessToken"]}
    )
    sessions = (await listed.json())["sessions"]
    assert [s["userAgent"] for s in sessions] == [
        "device-3",
        "device-2",
        "device-1",
        "device-0",
    ]
    assert [s["current"] for s in sessions] == [True, False, False, False]
