"""Middleware errors on protected routes: every row of the contract's table."""

from __future__ import annotations

import time

import jwt
import pytest
from multidict import CIMultiDict

from server import clock, keys
from tests.conftest import TEST_SECRET, Api, MakeApi, expect_error, make_admin_token

UNAUTHORIZED = "Unauthorized!"
WWW_AUTHENTICATE = 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-access-token": ""},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Token abc"},
    ],
)
async def test_no_token(api: Api, headers: dict[str, str]) -> None:
    response = await api.client.get("/api/test/user", headers=headers)
    await expect_error(response, 403, "No token provided!", "token_missing")


async def test_expired_token(api: Api) -> None:
    past = int(time.time()) - 3600
    token = jwt.encode(
        _claims(api, iat=past, exp=past + 60),
        TEST_SECRET,
        "HS256",
        headers={"kid": _kid(api)},
    )
    response = await api.get("/api/test/user", token)
    await expect_error(
        response, 401, "Unauthorized! Access Token was expired!", "token_expired"
    )
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE


def _claims(api: Api, **changes: object) -> dict:
    now = int(time.time())
    claims = {
        "sub": "someone",
        "roles": ["user"],
        "sid": "s",
        "jti": "j",
        "iat": now,
        "exp": now + 60,
        "iss": api.app[keys.AUTH].settings.tokens.issuer,
        "typ": "access",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _kid(api: Api) -> str:
    return api.app[keys.AUTH].access_tokens.ring.current.kid


async def test_bad_tokens_are_invalid(api: Api) -> None:
    signed_in = await api.user()
    good = signed_in["accessToken"]
    kid = _kid(api)
    forged = [
        "garbage",
        "a.b.c",
        good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        jwt.encode(
            _claims(api),
            "another-secret-that-is-32-bytes-long!!",
            "HS256",
            headers={"kid": kid},
        ),
        jwt.encode(_claims(api), None, "none", headers={"kid": kid}),
        jwt.encode(
            _claims(api, iss="someone-else"), TEST_SECRET, "HS256", headers={"kid": kid}
        ),
        jwt.encode(
            _claims(api, typ="refresh"), TEST_SECRET, "HS256", headers={"kid": kid}
        ),
        jwt.encode(_claims(api, exp=None), TEST_SECRET, "HS256", headers={"kid": kid}),
        jwt.encode(_claims(api), TEST_SECRET, "HS256", headers={"kid": "unknown"}),
        jwt.encode(_claims(api), TEST_SECRET, "HS256"),
        signed_in["refreshToken"],
    ]
    for token in forged:
        response = await api.get("/api/test/user", token)
        await expect_error(response, 401, UNAUTHORIZED, "token_invalid")
        assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE


async def test_token_of_revoked_session(api: Api) -> None:
    signed_in = await api.user()
    assert (await api.signout(signed_in["refreshToken"])).status == 200
    response = await api.get("/api/test/user", signed_in["accessToken"])
    await expect_error(response, 401, UNAUTHORIZED, "token_revoked")
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE


async def test_token_of_deleted_user(api: Api) -> None:
    signed_in = await api.user()
    admin = await make_admin_token(api.app)
    deleted = await api.client.delete(
        f"/api/users/{signed_in['id']}", headers={"x-access-token": admin}
    )
    assert (deleted.status, await deleted.json()) == (
        200,
        {"message": "User was deleted."},
    )
    response = await api.get("/api/users/me", signed_in["accessToken"])
    await expect_error(response, 401, UNAUTHORIZED, "token_revoked")


@pytest.mark.parametrize("backend", ["memory"])
async def test_a_token_is_cached_but_expiry_is_rechecked(make_api: MakeApi) -> None:
    api = await make_api(tokens={"access_ttl": 1, "leeway": 0})
    token = (await api.user())["accessToken"]
    for _ in range(3):
        assert (await api.get("/api/test/user", token)).status == 200
    clock.advance(2.1)
    response = await api.get("/api/test/user", token)
    await expect_error(response, 401, None, "token_expired")


@pytest.mark.parametrize("backend", ["memory"])
async def test_short_tokens_get_no_more_leeway_than_a_tenth_of_their_life(
    make_api: MakeApi,
) -> None:
    """With the default 30 s leeway, AUTH_TOKENS_ACCESS_TTL=2 still expires after 2 s."""
    api = await make_api(tokens={"access_ttl": 2})
    assert api.app[keys.AUTH].settings.tokens.leeway == 30
    token = (await api.user())["accessToken"]
    assert (await api.get("/api/test/user", token)).status == 200
    clock.advance(2.1)
    await expect_error(
        await api.get("/api/test/user", token),
        401,
        "Unauthorized! Access Token was expired!",
        "token_expired",
    )


async def test_default_leeway_accepts_small_clock_skew(api: Api) -> None:
    past = (
        int(time.time()) - 20
    )  # expired 20 s ago: within the 30 s leeway of a 900 s token
    token = jwt.encode(
        _claims(api, iat=past - 900, exp=past),
        TEST_SECRET,
        "HS256",
        headers={"kid": _kid(api)},
    )
    assert (await api.get("/api/test/user", token)).status == 200


async def test_two_different_tokens_are_refused(api: Api) -> None:
    """A proxy in front of us may check one header and we the other: refuse rather
    than pick one."""
    first = (await api.user())["accessToken"]
    second = (await api.user())["accessToken"]
    cases = [
        [("x-access-token", first), ("Authorization", f"Bearer {second}")],
        [("x-access-token", "not-a-token"), ("Authorization", f"Bearer {first}")],
        [("x-access-token", first), ("x-access-token", second)],
        [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")],
    ]
    for headers in cases:
        response = await api.client.get("/api/test/user", headers=CIMultiDict(headers))
        await expect_error(response, 401, UNAUTHORIZED, "token_invalid")
        assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE


async def test_the_same_token_twice_is_one_token(api: Api) -> None:
    token = (await api.user())["accessToken"]
    for headers in (
        [("x-access-token", token), ("Authorization", f"Bearer {token}")],
        [("x-access-token", token), ("x-access-token", token)],
        [("x-access-token", ""), ("Authorization", f"Bearer {token}")],
    ):
        response = await api.client.get("/api/test/user", headers=CIMultiDict(headers))
        assert (response.status, await response.text()) == (200, "User Content.")
