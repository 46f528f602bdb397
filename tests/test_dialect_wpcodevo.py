"""The wpcodevo dialect (seed 002): each documented request replayed with its documented
answer (status, body, cookies and their attributes), every documented error included, in
`{"status", "message", "code"}`; its cross-site protection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from server import clock, keys, keywatch
from server import service as service_module
from server.dialects import wpcodevo
from server.middleware import ConflictingTokens
from server.signing_keys import rotate
from server.tokens import AccessTokens, UnknownKeyId
from storage import User
from tests.conftest import PASSWORD, make_admin_token
from tests.dialect_client import (
    Answer,
    Client,
    MakeClient,
    client_factory,
    cookie_values,
    session_of,
)

# wpcodevo answers the routes it shares with the core (listed first).
WPCODEVO_FIRST = ("wpcodevo", "bezkoder")
NOT_LOGGED_IN = ("You are not logged in", "token_missing")
BAD_TOKEN = "Invalid token or user doesn't exist"
NO_REFRESH = "Could not refresh access token"
CSRF = {"status": "fail", "message": "CSRF check failed.", "code": "csrf_failed"}


def fail(message: str, code: str) -> dict[str, Any]:
    return {"status": "fail", "message": message, "code": code}


def token_cookie(value: str, max_age: int, *, httponly: bool = True) -> dict:
    cookie: dict[str, Any] = {
        "value": value,
        "max-age": str(max_age),
        "path": "/",
        "samesite": "Lax",
        "secure": True,
    }
    if httponly:
        cookie["httponly"] = True
    return cookie


@pytest.fixture
async def make_client(tmp_path: Path, backend: str) -> AsyncIterator[MakeClient]:
    async with client_factory(tmp_path, backend) as build:
        yield build


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """Memory only: for what does not depend on the storage backend."""
    async with client_factory(tmp_path, "memory") as build:
        yield await build(WPCODEVO_FIRST)


def session_cookies(login: Answer) -> dict[str, str]:
    values = cookie_values(login)
    return {name: values[name] for name in ("access_token", "refresh_token")}


# GET /api/healthChecker


async def test_health_checker(client: Client) -> None:
    answer = await client.call("GET", "/api/healthChecker")
    assert (answer.status, answer.body) == (
        200,
        {"status": "success", "message": "Welcome to CodevoWeb????"},
    )


# POST /api/auth/register


async def test_register(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    answer = await client.register("Ann.Lee@example.com", "Ann Lee", role="admin")
    assert answer.status == 201
    user = answer.body["data"]["user"]
    assert answer.body == {"status": "success", "data": {"user": user}}
    assert set(user) == {"id", "username", "email", "roles", "disabled", "createdAt"}
    assert user["username"] == "Ann.Lee"  # derived from the email; not to rely on
    assert user["email"] == "Ann.Lee@example.com"
    assert (user["roles"], user["disabled"]) == (["ROLE_USER"], False)
    assert user["createdAt"].endswith("Z")
    second = await client.register("ann.lee@example.org", "Ann Lee")
    assert second.body["data"]["user"]["username"] == "ann.lee2"


@pytest.mark.parametrize(
    ("email", "base", "derived"),
    [
        ("kim@example.com", "kim", "kim_0badc0de"),
        ("a" * 40 + "@example.com", "a" * 32, "a" * 23 + "_0badc0de"),
    ],
)
async def test_register_when_every_derived_username_is_taken(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    email: str,
    base: str,
    derived: str,
) -> None:
    """The local part and its 49 numbered forms all taken (say, registered to block
    it): a random suffix, not a refusal."""
    storage = client.app[keys.AUTH].storage
    for n in range(1, 51):
        suffix = "" if n == 1 else str(n)
        name = base[: 32 - len(suffix)] + suffix
        await storage.create_user(
            User(f"squat{n}", name, f"squat{n}@example.net", "x", ("user",), 0)
        )
    monkeypatch.setattr(service_module.secrets, "token_hex", lambda n: "0badc0de")
    answer = await client.register(email)
    assert answer.status == 201, answer.body
    assert answer.body["data"]["user"]["username"] == derived
    # The random one taken too (only this test's fixed "random" makes it so): a
    # bounded number of tries, then the answer a taken name gets; no loop, no 5xx.
    again = await client.register(email.replace("example.com", "example.org"))
    assert (again.status, again.body) == (
        409,
        fail("Failed! Username is already in use!", "username_taken"),
    )


async def test_register_email_already_used(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    assert (await client.register("bea@example.com")).status == 201
    answer = await client.register("BEA@example.COM")
    assert (answer.status, answer.body) == (
        409,
        fail("Email already exist", "email_taken"),
    )


@pytest.mark.parametrize(
    ("changes", "failing"),
    [
        ({"name": None}, [("name", "Name must be a string")]),
        ({"name": "  "}, [("name", "Name must not be empty")]),
        ({"email": "nope"}, [("email", "Invalid email")]),
        (
            {"password": "short", "passwordConfirm": "short"},
            [("password", "Password must be at least 8 characters")],
        ),
        (
            {"passwordConfirm": "something else"},
            [("passwordConfirm", "Passwords do not match")],
        ),
        (
            {"passwordConfirm": ""},
            [("passwordConfirm", "Please confirm your password")],
        ),
        (
            {"name": "", "email": 3, "passwordConfirm": "x"},
            [
                ("name", "Name must not be empty"),
                ("email", "Email must be a string"),
                ("passwordConfirm", "Passwords do not match"),
            ],
        ),
    ],
)
async def test_register_validation(
    client: Client, changes: dict[str, Any], failing: list[tuple[str, str]]
) -> None:
    body = {
        "name": "Cy",
        "email": "cy@example.com",
        "password": PASSWORD,
        "passwordConfirm": PASSWORD,
        **changes,
    }
    answer = await client.call("POST", "/api/auth/register", json=body)
    key, text = failing[0]
    assert (answer.status, answer.body) == (
        400,
        {
            **fail(f"{key}: {text}", "validation_error"),
            "errors": [{"path": [k], "message": m} for k, m in failing],
        },
    )


async def test_register_missing_fields(client: Client) -> None:
    answer = await client.call("POST", "/api/auth/register", json={})
    assert answer.body["message"] == "name: Name is required"
    assert [issue["message"] for issue in answer.body["errors"]] == [
        "Name is required",
        "Email is required",
        "Password is required",
        "Please confirm your password",
    ]


async def test_register_grants_no_role(client: Client) -> None:
    answer = await client.register("dee@example.com", roles=["admin"], role="admin")
    assert answer.body["data"]["user"]["roles"] == ["ROLE_USER"]


# POST /api/auth/login


async def test_login_sets_the_three_cookies(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    answer = await client.wp_user("eve@example.com")
    token = answer.body["access_token"]
    assert answer.body == {"status": "success", "access_token": token}
    refresh = answer.cookies["refresh_token"]["value"]
    assert answer.cookies == {
        "access_token": token_cookie(token, 900),
        "refresh_token": token_cookie(refresh, 2592000),
        "logged_in": token_cookie("true", 900, httponly=False),
    }
    assert len(refresh) >= 43  # 256 bits, URL-safe


async def test_cookies_without_secure_for_plain_http(client: Client) -> None:
    plain = await client.factory(
        WPCODEVO_FIRST, cookies={"secure": False}, tokens={"access_ttl": 60}
    )
    answer = await plain.wp_user("fay@example.com")
    assert {name: "secure" in c for name, c in answer.cookies.items()} == {
        "access_token": False,
        "refresh_token": False,
        "logged_in": False,
    }
    assert answer.cookies["access_token"]["max-age"] == "60"


async def test_login_failures(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    assert (await client.register("gil@example.com")).status == 201
    for answer in (
        await client.login("gil@example.com", "not the password at all"),
        await client.login("nobody@example.com"),
    ):
        assert (answer.status, answer.body, answer.cookies) == (
            401,
            fail("Invalid email or password", "invalid_credentials"),
            {},
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"password": PASSWORD}, "email: Email is required"),
        ({"email": "", "password": PASSWORD}, "email: Email must not be empty"),
        (
            {"email": "h@example.com", "password": 1},
            "password: Password must be a string",
        ),
    ],
)
async def test_login_validation(
    client: Client, body: dict[str, Any], message: str
) -> None:
    answer = await client.call("POST", "/api/auth/login", json=body)
    assert (answer.status, answer.body["message"], answer.body["code"]) == (
        400,
        message,
        "validation_error",
    )


# GET /api/users/me and the middleware errors


async def test_me_with_bearer_or_cookie(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    login = await client.wp_user("hal@example.com")
    token = login.body["access_token"]
    for how in (
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"cookies": {"access_token": token}},
        # Bearer first: a stale cookie does not matter.
        {
            "headers": {"Authorization": f"Bearer {token}"},
            "cookies": {"access_token": "x"},
        },
    ):
        answer = await client.call("GET", "/api/users/me", **how)
        user = answer.body["data"]["user"]
        assert (answer.status, answer.body) == (
            200,
            {"status": "success", "data": {"user": user}},
        )
        assert user["email"] == "hal@example.com"
        assert set(user) == {
            "id",
            "username",
            "email",
            "roles",
            "disabled",
            "createdAt",
        }


async def test_middleware_errors_are_401(client: Client) -> None:
    login = await client.wp_user("ida@example.com")
    token = login.body["access_token"]
    cases = [
        ({}, NOT_LOGGED_IN),
        ({"headers": {"Authorization": "Basic abc"}}, NOT_LOGGED_IN),
        (
            {"headers": {"Authorization": "Bearer nonsense"}},
            (BAD_TOKEN, "token_invalid"),
        ),
        ({"cookies": {"access_token": token + "x"}}, (BAD_TOKEN, "token_invalid")),
        ({"headers": {"x-access-token": token}}, NOT_LOGGED_IN),  # not wpcodevo's
    ]
    for how, (message, code) in cases:
        answer = await client.call("GET", "/api/users/me", **how)
        assert (answer.status, answer.body) == (401, fail(message, code)), how
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    other = (await client.login("ida@example.com")).body["access_token"]
    response = await client.client.get(
        "/api/users/me",
        headers=[
            ("Authorization", f"Bearer {token}"),
            ("Authorization", f"Bearer {other}"),
        ],
    )
    assert (response.status, await response.json()) == (
        401,
        fail(BAD_TOKEN, "token_invalid"),
    )
    clock.advance(900 + 91)
    answer = await client.call("GET", "/api/users/me", cookies={"access_token": token})
    assert (answer.status, answer.body) == (401, fail(BAD_TOKEN, "token_expired"))


async def test_a_revoked_session_and_a_deleted_user(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    login = await client.wp_user("jo@example.com")
    assert (
        await client.call("GET", "/api/auth/logout", cookies=session_cookies(login))
    ).status == 200
    answer = await client.call(
        "GET", "/api/users/me", cookies={"access_token": login.body["access_token"]}
    )
    assert (answer.status, answer.body) == (
        401,
        fail("User session has expired", "token_revoked"),
    )


@pytest.mark.parametrize("backend", ["memory"])
async def test_a_user_deleted_by_another_instance(make_client: MakeClient) -> None:
    """Deleted straight in storage, as another instance would, and asked before this
    process has heard of it (with PostgreSQL's push it may hear at once, and then it is
    the revoked session above)."""
    client = await make_client(WPCODEVO_FIRST)
    login = await client.wp_user("jo@example.com")
    user_id = (
        await client.call("GET", "/api/users/me", cookies=session_cookies(login))
    ).body["data"]["user"]["id"]
    await client.app[keys.AUTH].storage.delete_user(user_id, clock.epoch())
    answer = await client.call("GET", "/api/users/me", cookies=session_cookies(login))
    assert (answer.status, answer.body) == (
        401,
        fail("User with that token no longer exist", "token_revoked"),
    )


# GET /api/users


async def test_every_user_for_an_admin(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    for n in range(3):
        clock.advance(1)  # users are listed by creation time
        assert (await client.register(f"u{n}@example.com")).status == 201
    admin = await make_admin_token(client.app)
    answer = await client.call(
        "GET", "/api/users", headers={"Authorization": f"Bearer {admin}"}
    )
    users = answer.body["data"]["users"]
    assert (answer.status, answer.body) == (
        200,
        {"status": "success", "result": 4, "data": {"users": users}},
    )
    assert [user["email"] for user in users] == [
        "root@example.com",  # made at time 0 by make_admin_token
        "u0@example.com",
        "u1@example.com",
        "u2@example.com",
    ]
    assert set(users[1]) == {
        "id",
        "username",
        "email",
        "roles",
        "disabled",
        "createdAt",
    }


async def test_every_user_is_for_admins_only(client: Client) -> None:
    login = await client.wp_user("kim@example.com")
    answer = await client.call("GET", "/api/users", cookies=session_cookies(login))
    assert (answer.status, answer.body) == (
        403,
        fail("You are not allowed to perform this action", "forbidden"),
    )
    answer = await client.call("GET", "/api/users")
    assert (answer.status, answer.body) == (401, fail(*NOT_LOGGED_IN))


# GET /api/auth/refresh


async def test_refresh_rotates_the_cookie(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST, tokens={"reuse_interval": 0})
    login = await client.wp_user("lou@example.com")
    first = login.cookies["refresh_token"]["value"]
    answer = await client.wp_refresh(first)
    token = answer.body["access_token"]
    assert (answer.status, answer.body) == (
        200,
        {"status": "success", "access_token": token},
    )
    successor = answer.cookies["refresh_token"]["value"]
    assert successor != first
    assert answer.cookies == {
        "access_token": token_cookie(token, 900),
        "refresh_token": token_cookie(successor, 2592000),
        "logged_in": token_cookie("true", 900, httponly=False),
    }
    assert session_of(token) == session_of(login.body["access_token"])
    me = await client.call("GET", "/api/users/me", cookies={"access_token": token})
    assert me.status == 200
    # The browser keeps the successor: its predecessor is retired for good, and
    # presenting it again is reuse, which ends the session.
    following = await client.wp_refresh(successor)
    assert following.status == 200
    clock.advance(1)
    stolen = await client.wp_refresh(first)
    assert (stolen.status, stolen.body, stolen.cookies) == (
        403,
        fail(NO_REFRESH, "refresh_reused"),
        {},
    )
    latest = following.cookies["refresh_token"]["value"]
    assert (await client.wp_refresh(latest)).body == fail(NO_REFRESH, "refresh_reused")


async def test_refresh_refusals(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST, tokens={"refresh_ttl": 60})
    for token, code in ((None, "refresh_missing"), ("never-issued", "refresh_unknown")):
        answer = await client.wp_refresh(token)
        assert (answer.status, answer.body, answer.cookies) == (
            403,
            fail(NO_REFRESH, code),
            {},
        )
    login = await client.wp_user("max@example.com")
    clock.advance(61)
    answer = await client.wp_refresh(login.cookies["refresh_token"]["value"])
    assert (answer.status, answer.body) == (403, fail(NO_REFRESH, "refresh_expired"))


async def test_refresh_without_rotation_keeps_the_cookie(client: Client) -> None:
    plain = await client.factory(WPCODEVO_FIRST, tokens={"rotate_refresh": False})
    login = await plain.wp_user("ned@example.com")
    answer = await plain.wp_refresh(login.cookies["refresh_token"]["value"])
    assert answer.status == 200
    assert set(answer.cookies) == {"access_token", "logged_in"}


# GET /api/auth/logout


async def test_logout_clears_the_cookies(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    login = await client.wp_user("oli@example.com")
    other = await client.login("oli@example.com")  # another device
    answer = await client.call(
        "GET", "/api/auth/logout", cookies=session_cookies(login)
    )
    assert (answer.status, answer.body) == (200, {"status": "success"})
    cleared = {
        "value": "",
        "max-age": "0",
        "path": "/",
        "samesite": "Lax",
        "secure": True,
    }
    expires = {"expires": "Thu, 01 Jan 1970 00:00:00 GMT"}
    assert answer.cookies == {
        "access_token": {**cleared, **expires, "httponly": True},
        "refresh_token": {**cleared, **expires, "httponly": True},
        "logged_in": {**cleared, **expires},
    }
    refresh = await client.wp_refresh(login.cookies["refresh_token"]["value"])
    assert refresh.body == fail(NO_REFRESH, "refresh_revoked")
    # The user's other sessions stay.
    assert (
        await client.wp_refresh(other.cookies["refresh_token"]["value"])
    ).status == 200


async def test_logout_needs_an_access_token(client: Client) -> None:
    login = await client.wp_user("pat@example.com")
    refresh_only = {"refresh_token": login.cookies["refresh_token"]["value"]}
    answer = await client.call("GET", "/api/auth/logout", cookies=refresh_only)
    assert (answer.status, answer.body, answer.cookies) == (
        401,
        fail(*NOT_LOGGED_IN),
        {},
    )
    assert (await client.wp_refresh(refresh_only["refresh_token"])).status == 200


async def test_logout_by_the_access_token_alone(make_client: MakeClient) -> None:
    client = await make_client(WPCODEVO_FIRST)
    login = await client.wp_user("quin@example.com")
    token = login.body["access_token"]
    for cookies in (None, {"refresh_token": "matches-no-session"}):
        login = await client.login("quin@example.com")
        token = login.body["access_token"]
        answer = await client.call(
            "GET",
            "/api/auth/logout",
            headers={"Authorization": f"Bearer {token}"},
            cookies=cookies,
        )
        assert (answer.status, answer.body) == (200, {"status": "success"})
        refresh = await client.wp_refresh(login.cookies["refresh_token"]["value"])
        assert refresh.body == fail(NO_REFRESH, "refresh_revoked")


async def test_logout_with_a_token_of_a_key_published_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance rotated the key and signed this token: logout rereads the key
    file (as the middleware does) instead of refusing it."""
    monkeypatch.setattr(keywatch, "UNKNOWN_KID_GAP", 0.0)
    generated = {"secret": "", "algorithm": "EdDSA", "key_reload_interval": 3600}
    async with client_factory(tmp_path, "memory") as build:
        await _logout_after_rotation(await build(WPCODEVO_FIRST, tokens=generated))


async def _logout_after_rotation(client: Client) -> None:
    login = await client.wp_user("tao@example.com")
    auth = client.app[keys.AUTH]
    user = await auth.storage.find_user(email="tao@example.com")
    assert user is not None
    elsewhere = AccessTokens(auth.settings.tokens, rotate(auth.settings, delay=0))
    token = elsewhere.issue(user, session_of(login.body["access_token"]))
    with pytest.raises(UnknownKeyId):
        auth.access_tokens.verify(token)
    answer = await client.call(
        "GET", "/api/auth/logout", headers={"Authorization": f"Bearer {token}"}
    )
    assert (answer.status, answer.body) == (200, {"status": "success"})
    refresh = await client.wp_refresh(login.cookies["refresh_token"]["value"])
    assert refresh.body == fail(NO_REFRESH, "refresh_revoked")


async def test_logout_refuses_a_token_of_a_key_nobody_published(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keywatch, "UNKNOWN_KID_GAP", 0.0)
    forged = jwt.encode({"sub": "x"}, "k" * 32, "HS256", headers={"kid": "nope"})
    answer = await client.call(
        "GET", "/api/auth/logout", headers={"Authorization": f"Bearer {forged}"}
    )
    assert (answer.status, answer.body) == (401, fail(BAD_TOKEN, "token_invalid"))


@pytest.mark.parametrize(
    ("headers", "cookie", "expected"),
    [
        ({"Authorization": "Bearer A"}, "B", "A"),
        ({"Authorization": "bearer  A "}, None, "A"),
        ({"Authorization": "Bearer "}, "B", "B"),
        ({"Authorization": "Basic A"}, "B", "B"),
        ({"x-access-token": "A"}, None, None),  # not this seed's header
        ({}, "", None),
    ],
)
def test_read_token(
    headers: dict[str, str], cookie: str | None, expected: str | None
) -> None:
    cookies = {} if cookie is None else {"access_token": cookie}
    if cookies:
        headers = {**headers, "Cookie": f"access_token={cookie}"}
    request = make_mocked_request("GET", "/api/users/me", headers=headers)
    assert wpcodevo.read_token(request) == expected


def test_read_token_refuses_two_different_bearer_tokens() -> None:
    headers = CIMultiDict(
        [("Authorization", "Bearer A"), ("Authorization", "Bearer B")]
    )
    request = make_mocked_request("GET", "/api/users/me", headers=headers)
    with pytest.raises(ConflictingTokens):
        wpcodevo.read_token(request)
    same = CIMultiDict([("Authorization", "Bearer A"), ("Authorization", "Bearer A")])
    assert wpcodevo.read_token(make_mocked_request("GET", "/", headers=same)) == "A"


# Cross-site requests to refresh and logout


CROSS_SITE = [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "OWN"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://allowed.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://anything.example"},  # "*" admits no origin here
]
SAME_SITE = [
    {},
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "none"},
    {"Origin": "OWN", "Sec-Fetch-Site": "same-origin"},
    {"Origin": "http://allowed.example", "Sec-Fetch-Site": "same-site"},
]


def _with_own_origin(client: Client, headers: dict[str, str]) -> dict[str, str]:
    own = f"http://{client.client.host}:{client.client.port}"
    return {k: own if v == "OWN" else v for k, v in headers.items()}


async def test_cross_site_requests_change_nothing(make_client: MakeClient) -> None:
    origins = ("http://allowed.example", "*")
    client = await make_client(
        WPCODEVO_FIRST,
        server={"cors_origins": origins},
        tokens={"strict_rotation": True, "reuse_interval": 0},
    )
    login = await client.wp_user("rae@example.com")
    cookies = session_cookies(login)
    for headers in CROSS_SITE:
        headers = _with_own_origin(client, headers)
        refresh = await client.wp_refresh(cookies["refresh_token"], headers=headers)
        logout = await client.call(
            "GET", "/api/auth/logout", cookies=cookies, headers=headers
        )
        nobody = await client.call("GET", "/api/auth/logout", headers=headers)
        for answer in (refresh, logout, nobody):
            assert (answer.status, answer.body, answer.cookies) == (403, CSRF, {}), (
                headers
            )
    # Nothing changed: the first refresh token is still current (with strict rotation
    # a rotated one would now be reuse) and the session is live.
    clock.advance(1)
    for headers in SAME_SITE:
        answer = await client.wp_refresh(
            cookies["refresh_token"], headers=_with_own_origin(client, headers)
        )
        assert answer.status == 200, (headers, answer.body)
        cookies["refresh_token"] = answer.cookies["refresh_token"]["value"]
    answer = await client.call(
        "GET",
        "/api/auth/logout",
        cookies={**cookies, "access_token": answer.body["access_token"]},
        headers=_with_own_origin(client, {"Origin": "OWN"}),
    )
    assert answer.status == 200


# Conditions the seed does not show: the core's status, message and code.


async def test_bodies_the_core_refuses(client: Client) -> None:
    response = await client.client.post(
        "/api/auth/login", data=b"[", headers={"Content-Type": "application/json"}
    )
    assert (response.status, await response.json()) == (
        400,
        fail("Request body is not valid JSON", "validation_error"),
    )
    big = {"name": "x" * 20000, "email": "s@example.com", "password": PASSWORD}
    response = await client.client.post("/api/auth/register", json=big)
    assert (response.status, await response.json()) == (
        413,
        fail("Request body is larger than 16384 bytes", "payload_too_large"),
    )


async def test_rate_limited_login(make_client: MakeClient) -> None:
    client = await make_client(
        WPCODEVO_FIRST, ratelimit={"enabled": True, "signin_pair_limit": 1}
    )
    assert (await client.register("tia@example.com")).status == 201
    wrong = await client.login("tia@example.com", "not the password at all")
    assert wrong.status == 401
    answer = await client.login("tia@example.com")
    assert answer.status == 429
    assert (answer.body["status"], answer.body["code"]) == ("fail", "rate_limited")
    assert set(answer.body) == {"status", "message", "code"}
    assert int(answer.headers["Retry-After"]) >= 1


async def test_a_server_error_says_error(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(client.app[keys.AUTH].service, "register", broken)
    with caplog.at_level(logging.CRITICAL, logger="auth.server"):
        answer = await client.register("uma@example.com")
    assert (answer.status, answer.body) == (
        500,
        {
            "status": "error",
            "message": "Internal server error",
            "code": "internal_error",
        },
    )


async def test_a_disabled_account_is_the_cores_403(client: Client) -> None:
    assert (await client.register("val@example.com")).status == 201
    storage = client.app[keys.AUTH].storage
    user = await storage.find_user(email="val@example.com")
    await storage.update_user(user.id, disabled=True, now=clock.epoch())
    answer = await client.login("val@example.com")
    assert (answer.status, answer.body) == (
        403,
        fail("Account is disabled.", "account_disabled"),
    )


async def test_cors_lets_a_named_front_end_use_the_cookies(client: Client) -> None:
    """The seed's front end (another port) sends its requests with credentials: only
    an origin listed by name may, never one admitted by `*`."""
    front = "http://localhost:3000"
    named = await client.factory(WPCODEVO_FIRST, server={"cors_origins": (front, "*")})
    preflight = await named.call(
        "OPTIONS",
        "/api/auth/login",
        headers={"Origin": front, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    assert (await named.register("xia@example.com")).status == 201
    login = await named.call(
        "POST",
        "/api/auth/login",
        json={"email": "xia@example.com", "password": PASSWORD},
        headers={"Origin": front},
    )
    assert login.headers["Access-Control-Allow-Origin"] == front
    assert login.headers["Access-Control-Allow-Credentials"] == "true"
    other = await named.call(
        "GET", "/api/healthChecker", headers={"Origin": "http://elsewhere.example"}
    )
    assert other.headers["Access-Control-Allow-Origin"] == "http://elsewhere.example"
    assert "Access-Control-Allow-Credentials" not in other.headers
