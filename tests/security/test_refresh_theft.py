"""Stolen refresh tokens: replays after rotation revoke the whole session for thief and
victim alike, sign-out by the thief ends the session, a token only ever mints access for
its owner, and storage never holds a refresh token in plaintext. Every backend."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import jwt
import pytest

from tests.conftest import Api, MakeApi, expect_error
from tests.security.conftest import Clock
from tests.security.helpers import stored_bytes, unb64url

REUSED = "refresh_reused"
REVOKED_MESSAGE = "Refresh token was revoked. Please make a new signin request"
SIGNED_OUT = {"message": "You've been signed out!"}


def claims(access_token: str) -> dict:
    return jwt.decode(access_token, options={"verify_signature": False})


async def refreshed(api: Api, token: str) -> dict:
    response = await api.refresh(token)
    assert response.status == 200, await response.text()
    return await response.json()


async def expect_family_revoked(
    api: Api, refresh_tokens: list[str], access: list[str]
) -> None:
    for token in refresh_tokens:
        await expect_error(await api.refresh(token), 403, None, REUSED)
    for token in access:
        response = await api.get("/api/test/user", token)
        await expect_error(response, 401, "Unauthorized!", "token_revoked")


@pytest.mark.parametrize("strict", [False, True])
async def test_thief_replaying_after_the_client_moved_on(
    make_api: MakeApi, clock: Clock, strict: bool
) -> None:
    """The thief copied the client's second token; the client has rotated twice since."""
    api = await make_api(tokens={"reuse_interval": 0, "strict_rotation": strict})
    signed_in = await api.user()
    stolen = await refreshed(api, signed_in["refreshToken"])
    second = await refreshed(api, stolen["refreshToken"])
    third = await refreshed(api, second["refreshToken"])
    clock.advance(2)
    response = await api.refresh(stolen["refreshToken"])
    await expect_error(response, 403, None, REUSED)
    await expect_family_revoked(
        api, [third["refreshToken"]], [signed_in["accessToken"], third["accessToken"]]
    )


@pytest.mark.parametrize("strict", [False, True])
async def test_thief_who_rotated_first_is_cut_off_when_the_client_returns(
    make_api: MakeApi, clock: Clock, strict: bool
) -> None:
    """The thief uses the stolen token first and adopts each successor; the client (a
    seed front end keeping its first token) comes back later: both lose the session."""
    api = await make_api(tokens={"reuse_interval": 0, "strict_rotation": strict})
    victim = await api.user()
    thief_first = await refreshed(api, victim["refreshToken"])
    thief_second = await refreshed(api, thief_first["refreshToken"])
    assert claims(thief_second["accessToken"])["sub"] == victim["id"]
    clock.advance(2)
    response = await api.refresh(victim["refreshToken"])
    await expect_error(response, 403, None, REUSED)
    await expect_family_revoked(
        api,
        [thief_second["refreshToken"], thief_first["refreshToken"]],
        [thief_second["accessToken"], victim["accessToken"]],
    )


async def test_thief_racing_the_client_loses_and_the_session_ends(
    make_api: MakeApi, clock: Clock
) -> None:
    """Strict rotation: the thief's old token and the client's current one arrive
    together. Whichever is first, the thief is refused and the session is revoked."""
    api = await make_api(tokens={"reuse_interval": 0, "strict_rotation": True})
    signed_in = await api.user()
    current = await refreshed(api, signed_in["refreshToken"])
    clock.advance(2)
    thief, client = await asyncio.gather(
        api.refresh(signed_in["refreshToken"]), api.refresh(current["refreshToken"])
    )
    await expect_error(thief, 403, None, REUSED)
    if client.status == 200:
        newest = (await client.json())["refreshToken"]
    else:
        await expect_error(client, 403, None, REUSED)
        newest = current["refreshToken"]
    await expect_family_revoked(api, [newest], [current["accessToken"]])


async def test_a_refresh_token_mints_access_for_its_owner_only(api: Api) -> None:
    users = [await api.user(f"user{n}") for n in range(6)]
    stranger = users[-1]["accessToken"]
    responses = await asyncio.gather(
        *(
            api.refresh(user["refreshToken"], **{"x-access-token": stranger})
            for user in users
        )
    )
    for user, response in zip(users, responses, strict=True):
        body = await response.json()
        assert response.status == 200, body
        minted = claims(body["accessToken"])
        assert (minted["sub"], minted["sid"]) == (
            user["id"],
            claims(user["accessToken"])["sid"],
        )
        me = await (await api.get("/api/users/me", body["accessToken"])).json()
        assert (me["id"], me["username"]) == (user["id"], user["username"])


@pytest.mark.parametrize("stolen", ["retired", "current"])
async def test_signout_by_the_thief_revokes_the_session(api: Api, stolen: str) -> None:
    signed_in = await api.user("alice")
    other_device = await (await api.signin("alice")).json()
    current = await refreshed(api, signed_in["refreshToken"])
    token = (
        signed_in["refreshToken"] if stolen == "retired" else current["refreshToken"]
    )
    response = await api.signout(token)
    assert (response.status, await response.json()) == (200, SIGNED_OUT)
    for refresh_token in (current["refreshToken"], signed_in["refreshToken"]):
        response = await api.refresh(refresh_token)
        await expect_error(response, 403, REVOKED_MESSAGE, "refresh_revoked")
    response = await api.get("/api/test/user", current["accessToken"])
    await expect_error(response, 401, "Unauthorized!", "token_revoked")
    assert (await api.get("/api/test/user", other_device["accessToken"])).status == 200
    assert (await api.refresh(other_device["refreshToken"])).status == 200


async def test_refresh_tokens_are_stored_only_as_hashes(api: Api) -> None:
    signed_in = await api.user("alice")
    first = await refreshed(api, signed_in["refreshToken"])
    second = await refreshed(api, first["refreshToken"])
    tokens = [signed_in["refreshToken"], first["refreshToken"], second["refreshToken"]]
    stored = await stored_bytes(api)
    for token in tokens:
        digest = hashlib.sha256(token.encode()).digest()
        assert digest in stored or digest.hex().encode() in stored, "the hash is stored"
        raw = unb64url(token)
        for form in (token.encode(), raw, raw.hex().encode(), base64.b64encode(raw)):
            assert form not in stored, f"refresh token {token!r} is stored as {form!r}"
