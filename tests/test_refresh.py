"""POST /api/auth/refreshtoken: rotation, reuse detection, expiry, the seeds' clients."""

from __future__ import annotations

import asyncio

import jwt
import pytest

from server import clock
from tests.conftest import Api, MakeApi, expect_error

REUSED = "refresh_reused"


def sid(access_token: str) -> str:
    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


async def refreshed(api: Api, token: str) -> dict:
    response = await api.refresh(token)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_refresh_rotates(api: Api) -> None:
    signed_in = await api.user()
    body = await refreshed(api, signed_in["refreshToken"])
    assert set(body) == {"accessToken", "refreshToken", "tokenType", "expiresIn"}
    assert (body["tokenType"], body["expiresIn"]) == ("Bearer", 900)
    assert body["refreshToken"] != signed_in["refreshToken"]
    assert sid(body["accessToken"]) == sid(signed_in["accessToken"])
    assert (await api.get("/api/test/user", body["accessToken"])).status == 200
    following = await refreshed(api, body["refreshToken"])
    assert following["refreshToken"] not in (
        body["refreshToken"],
        signed_in["refreshToken"],
    )


async def test_missing_token(api: Api) -> None:
    for body in ({}, {"refreshToken": None}, {"refreshToken": ""}):
        response = await api.client.post("/api/auth/refreshtoken", json=body)
        await expect_error(
            response, 403, "Refresh Token is required!", "refresh_missing"
        )
    response = await api.client.post("/api/auth/refreshtoken")
    await expect_error(response, 403, "Refresh Token is required!", "refresh_missing")


async def test_unknown_token(api: Api) -> None:
    response = await api.refresh("no-such-token")
    await expect_error(
        response, 403, "Refresh token is not in database!", "refresh_unknown"
    )


async def test_wrong_type_is_a_validation_error(api: Api) -> None:
    response = await api.refresh(12345)
    await expect_error(
        response, 400, "refreshToken must be a string", "validation_error"
    )


async def test_expired_token_is_deleted(make_api: MakeApi) -> None:
    api = await make_api(tokens={"refresh_ttl": 1})
    token = (await api.user())["refreshToken"]
    clock.advance(1.1)
    response = await api.refresh(token)
    await expect_error(
        response,
        403,
        "Refresh token was expired. Please make a new signin request",
        "refresh_expired",
    )
    response = await api.refresh(token)
    await expect_error(
        response, 403, "Refresh token is not in database!", "refresh_unknown"
    )


async def test_refresh_ignores_any_access_token(api: Api) -> None:
    token = (await api.user())["refreshToken"]
    response = await api.refresh(token, **{"x-access-token": "expired.bad.token"})
    assert response.status == 200
    response = await api.refresh(
        (await response.json())["refreshToken"], Authorization="Bearer nonsense"
    )
    assert response.status == 200


async def test_replay_within_reuse_interval_returns_the_same_successor(
    api: Api,
) -> None:
    token = (await api.user())["refreshToken"]
    first = await refreshed(api, token)
    second = await refreshed(api, token)
    assert second["refreshToken"] == first["refreshToken"]


@pytest.mark.parametrize("strict", [False, True])
async def test_reuse_after_successor_was_presented(
    make_api: MakeApi, strict: bool
) -> None:
    api = await make_api(tokens={"reuse_interval": 0, "strict_rotation": strict})
    signed_in = await api.user()
    first = await refreshed(api, signed_in["refreshToken"])
    second = await refreshed(api, first["refreshToken"])
    clock.advance(1.05)  # past the reuse interval of 0 s
    response = await api.refresh(signed_in["refreshToken"])
    await expect_error(response, 403, None, REUSED)
    # The whole family is revoked: the newest token and every access token of the session.
    response = await api.refresh(second["refreshToken"])
    await expect_error(response, 403, None, REUSED)
    for access in (signed_in["accessToken"], second["accessToken"]):
        response = await api.get("/api/test/user", access)
        await expect_error(response, 401, "Unauthorized!", "token_revoked")


async def test_seed_clients_keep_their_first_token(make_api: MakeApi) -> None:
    """Not strict: a successor never presented keeps its predecessor working."""
    api = await make_api(tokens={"reuse_interval": 0})
    token = (await api.user())["refreshToken"]
    first = await refreshed(api, token)
    clock.advance(1.05)
    again = await refreshed(api, token)
    assert again["refreshToken"] == first["refreshToken"]
    assert (await api.get("/api/test/user", again["accessToken"])).status == 200


async def test_strict_rotation_refuses_the_first_token_after_the_interval(
    make_api: MakeApi,
) -> None:
    api = await make_api(tokens={"reuse_interval": 0, "strict_rotation": True})
    token = (await api.user())["refreshToken"]
    await refreshed(api, token)
    clock.advance(1.05)
    await expect_error(await api.refresh(token), 403, None, REUSED)


async def test_without_rotation_the_same_token_returns(make_api: MakeApi) -> None:
    api = await make_api(tokens={"rotate_refresh": False})
    token = (await api.user())["refreshToken"]
    for _ in range(3):
        assert (await refreshed(api, token))["refreshToken"] == token


async def test_concurrent_refreshes_mint_exactly_one_successor(api: Api) -> None:
    token = (await api.user())["refreshToken"]
    responses = await asyncio.gather(*(api.refresh(token) for _ in range(50)))
    assert [r.status for r in responses] == [200] * 50
    successors = {(await r.json())["refreshToken"] for r in responses}
    assert len(successors) == 1
    (successor,) = successors
    assert (await refreshed(api, successor))["refreshToken"] not in (token, successor)


async def test_new_access_token_carries_current_roles(api: Api) -> None:
    signed_in = await api.user(roles=["moderator"])
    body = await refreshed(api, signed_in["refreshToken"])
    claims = jwt.decode(body["accessToken"], options={"verify_signature": False})
    assert claims["roles"] == ["user", "moderator"]


@pytest.mark.parametrize(
    ("interval", "after", "answer"),
    [
        (0, 0.0, REUSED),  # 0 = no grace, not even in the same second
        (1, 0.9, "replayed"),
        (1, 1.1, REUSED),
        (10, 9.9, "replayed"),
        (10, 10.1, REUSED),
    ],
)
async def test_the_reuse_interval_is_exact(
    make_api: MakeApi, interval: int, after: float, answer: str
) -> None:
    """Strict rotation: a retired token returns its successor within the interval of its
    retirement (on the server clock, to the millisecond), and is reuse after it."""
    api = await make_api(tokens={"reuse_interval": interval, "strict_rotation": True})
    token = (await api.user())["refreshToken"]
    clock.advance(0.5 - clock.now() % 1)  # mid-second: whole seconds would blur it
    successor = (await refreshed(api, token))["refreshToken"]
    clock.advance(after)
    response = await api.refresh(token)
    if answer == "replayed":
        assert (await response.json())["refreshToken"] == successor
    else:
        await expect_error(response, 403, None, REUSED)


@pytest.mark.parametrize("backend", ["sqlite"])  # two apps on one database
async def test_switching_rotation_off_does_not_revive_retired_tokens(
    make_api: MakeApi,
) -> None:
    """A token retired while rotation was on stays retired: presenting it once the
    server runs with rotation off is reuse, and the session is revoked. (Every backend's
    side of this is in the storage contract tests.)"""
    api = await make_api(tokens={"reuse_interval": 0, "strict_rotation": True})
    token = (await api.user())["refreshToken"]
    successor = (await refreshed(api, token))["refreshToken"]
    await refreshed(api, successor)
    later = await make_api(tokens={"rotate_refresh": False})  # the same database
    await expect_error(await later.refresh(token), 403, None, REUSED)
    await expect_error(await later.refresh(successor), 403, None, REUSED)
