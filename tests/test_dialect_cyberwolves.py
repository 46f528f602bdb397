"""The cyberwolves dialect (seed 001): each documented request replayed with its
documented answer, every documented error included, in `{"error", "message", "code"}`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server import clock, create_app, keys
from tests.conftest import PASSWORD, make_settings
from tests.dialect_client import ALL, Client, MakeClient, client_factory, session_of

CREATED = {"error": False, "message": "Account created sucessfully"}
LOGGED_OUT = {"error": False, "message": "Logged Out Sucessfully"}


def refused(message: str, code: str) -> dict[str, Any]:
    return {"error": True, "message": message, "code": code}


INVALID_LOGIN = refused("Invalid email or password", "invalid_credentials")


@pytest.fixture
async def make_client(tmp_path: Path, backend: str) -> AsyncIterator[MakeClient]:
    async with client_factory(tmp_path, backend) as build:
        yield build


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """Memory only: for what does not depend on the storage backend."""
    async with client_factory(tmp_path, "memory") as build:
        yield await build()


# POST /api/signUp


async def test_sign_up_then_log_in(make_client: MakeClient) -> None:
    client = await make_client()
    answer = await client.sign_up("alice@example.com", "Alice Liddell")
    assert (answer.status, answer.body) == (201, CREATED)
    answer = await client.log_in("alice@example.com")
    assert answer.status == 200
    assert list(answer.body) == ["error", "accessToken", "refreshToken", "message"]
    assert answer.body["error"] is False
    assert answer.body["message"] == "Logged in sucessfully"
    # The access token opens the core's protected routes, sent either way.
    token = answer.body["accessToken"]
    assert (await client.get("/api/test/user", token)).status == 200
    bearer = await client.client.get(
        "/api/test/user", headers={"Authorization": f"Bearer {token}"}
    )
    assert (bearer.status, await bearer.text()) == (200, "User Content.")


async def test_email_already_used_any_case(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.sign_up("bob@example.com")).status == 201
    answer = await client.sign_up("BOB@Example.com", "Another Bob")
    assert (answer.status, answer.body) == (
        400,
        refused("User with given email already exist", "email_taken"),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, '"User Name" is required'),
        ({"userName": ""}, '"User Name" is not allowed to be empty'),
        ({"userName": 7}, '"User Name" must be a string'),
        ({"userName": None}, '"User Name" must be a string'),
        ({"email": None}, '"Email" must be a string'),
        ({"email": "not-an-email"}, '"Email" must be a valid email'),
        ({"password": "short"}, '"Password" length must be at least 8 characters long'),
        (
            {"password": "x" * 129},
            '"Password" length must be less than or equal to 128 characters long',
        ),
        ({"roles": ["admin"]}, '"roles" is not allowed'),
        ({"role": "admin"}, '"role" is not allowed'),
        # Schema order first, unknown keys last.
        (
            {"roles": ["admin"], "password": "short"},
            '"Password" length must be at least 8 characters long',
        ),
        ({"userName": None, "email": "bad"}, '"User Name" must be a string'),
    ],
)
async def test_sign_up_validation(
    client: Client, body: dict[str, Any], message: str
) -> None:
    full = {"userName": "Carol", "email": "carol@example.com", "password": PASSWORD}
    full.update(body)
    if body == {}:
        del full["userName"]
    answer = await client.call("POST", "/api/signUp", json=full)
    assert (answer.status, answer.body) == (400, refused(message, "validation_error"))
    assert (await client.log_in("carol@example.com")).status == 401


async def test_sign_up_takes_any_free_text_name(client: Client) -> None:
    for email, name in [
        ("d1@example.com", "Zoë Ωmega"),
        ("d2@example.com", "Zoë Ωmega"),
    ]:
        assert (await client.sign_up(email, name)).status == 201
    answer = await client.sign_up("d3@example.com", "a\x00b")
    assert answer.body == refused(
        '"User Name" must not contain control characters', "validation_error"
    )


async def test_a_common_password_names_the_field(client: Client) -> None:
    answer = await client.sign_up("e@example.com", password="password")
    assert (answer.status, answer.body) == (
        400,
        refused('"Password" is too common or too easy to guess', "validation_error"),
    )


# POST /api/logIn


async def test_unknown_email_and_wrong_password_look_alike(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    assert (await client.sign_up("frank@example.com")).status == 201
    wrong = await client.log_in("frank@example.com", "not the password at all")
    unknown = await client.log_in("nobody@example.com")
    assert (wrong.status, wrong.body) == (401, INVALID_LOGIN)
    assert (unknown.status, unknown.body) == (401, INVALID_LOGIN)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"password": PASSWORD}, '"Email" is required'),
        ({"email": "x@example.com"}, '"Password" is required'),
        ({"email": "x", "password": PASSWORD}, '"Email" must be a valid email'),
        (
            {"email": "x@example.com", "password": ""},
            '"Password" is not allowed to be empty',
        ),
        (
            {"email": "x@example.com", "password": 12345678},
            '"Password" must be a string',
        ),
        (
            {"email": "x@example.com", "password": PASSWORD, "username": "x"},
            '"username" is not allowed',
        ),
    ],
)
async def test_log_in_validation(
    client: Client, body: dict[str, Any], message: str
) -> None:
    answer = await client.call("POST", "/api/logIn", json=body)
    assert (answer.status, answer.body) == (400, refused(message, "validation_error"))


async def test_each_log_in_is_a_session_of_its_own(client: Client) -> None:
    first = await client.cw_user("grace@example.com")
    second = (await client.log_in("grace@example.com")).body
    assert session_of(first["accessToken"]) != session_of(second["accessToken"])
    assert (await client.cw_log_out(second["refreshToken"])).status == 200
    assert (await client.cw_refresh(first["refreshToken"])).status == 200
    assert (await client.cw_refresh(second["refreshToken"])).status == 400


# POST /api/refreshToken


async def test_refresh_keeps_the_seed_shape(make_client: MakeClient) -> None:
    client = await make_client()
    tokens = await client.cw_user("heidi@example.com")
    for _ in range(3):  # the client keeps presenting its first token, as the seed's
        answer = await client.cw_refresh(tokens["refreshToken"])
        assert answer.status == 200, answer.body
        assert list(answer.body) == ["error", "accessToken", "message"]
        assert answer.body["error"] is False
        assert answer.body["message"] == "Access token created successfully"
        access = answer.body["accessToken"]
        assert session_of(access) == session_of(tokens["accessToken"])
        assert (await client.get("/api/test/user", access)).status == 200


@pytest.mark.parametrize(
    ("body", "message", "code"),
    [
        ({}, '"Refresh Token" is required', "refresh_missing"),
        (
            {"refreshToken": ""},
            '"Refresh Token" is not allowed to be empty',
            "refresh_missing",
        ),
        ({"other": "x"}, '"Refresh Token" is required', "refresh_missing"),
        (
            {"refreshToken": None},
            '"Refresh Token" must be a string',
            "validation_error",
        ),
        ({"refreshToken": 5}, '"Refresh Token" must be a string', "validation_error"),
        (
            {"refreshToken": "t", "other": "x"},
            '"other" is not allowed',
            "validation_error",
        ),
    ],
)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_refresh_body_validation(
    client: Client, method: str, body: dict[str, Any], message: str, code: str
) -> None:
    answer = await client.call(method, "/api/refreshToken", json=body)
    assert (answer.status, answer.body) == (400, refused(message, code))


async def test_no_body_at_all_is_missing(client: Client) -> None:
    response = await client.client.post("/api/refreshToken")
    assert (response.status, await response.json()) == (
        400,
        refused('"Refresh Token" is required', "refresh_missing"),
    )


async def test_refused_tokens_are_400_with_their_code(make_client: MakeClient) -> None:
    client = await make_client(tokens={"refresh_ttl": 60})
    answer = await client.cw_refresh("never-issued")
    assert (answer.status, answer.body) == (
        400,
        refused("Invalid refresh token", "refresh_unknown"),
    )
    revoked = (await client.cw_user("ivan@example.com"))["refreshToken"]
    assert (await client.cw_log_out(revoked)).status == 200
    answer = await client.cw_refresh(revoked)
    assert answer.body == refused("Invalid refresh token", "refresh_revoked")
    expired = (await client.log_in("ivan@example.com")).body["refreshToken"]
    clock.advance(61)
    answer = await client.cw_refresh(expired)
    assert (answer.status, answer.body) == (
        400,
        refused("Invalid refresh token", "refresh_expired"),
    )


async def test_strict_rotation_ends_the_session_at_the_second_refresh(
    make_client: MakeClient,
) -> None:
    """DIALECTS.md: with strict rotation a cyberwolves client is logged out at its
    second refresh (reuse: the whole session is revoked)."""
    client = await make_client(tokens={"strict_rotation": True, "reuse_interval": 0})
    tokens = await client.cw_user("judy@example.com")
    first = await client.cw_refresh(tokens["refreshToken"])
    assert first.status == 200
    clock.advance(1)  # past the reuse interval
    second = await client.cw_refresh(tokens["refreshToken"])
    assert (second.status, second.body) == (
        400,
        refused("Invalid refresh token", "refresh_reused"),
    )
    after = await client.get("/api/test/user", first.body["accessToken"])
    assert (after.status, (await after.json())["code"]) == (401, "token_revoked")


async def test_reuse_of_an_adopted_successor_is_detected(
    make_client: MakeClient,
) -> None:
    """A thief replaying the first token after the owner adopted its successor (through
    the core's refresh, which answers it) ends the session."""
    client = await make_client(tokens={"reuse_interval": 0})
    stolen = (await client.cw_user("ken@example.com"))["refreshToken"]
    successor = (await (await client.refresh(stolen)).json())["refreshToken"]
    assert (await client.refresh(successor)).status == 200  # adopted
    clock.advance(1)  # past the reuse interval
    answer = await client.cw_refresh(stolen)
    assert answer.body == refused("Invalid refresh token", "refresh_reused")
    answer = await client.cw_refresh(successor)
    assert answer.body == refused("Invalid refresh token", "refresh_reused")


# DELETE /api/refreshToken


async def test_log_out_revokes_the_session(make_client: MakeClient) -> None:
    client = await make_client()
    tokens = await client.cw_user("leo@example.com")
    refreshed = await client.cw_refresh(tokens["refreshToken"])
    answer = await client.cw_log_out(tokens["refreshToken"])  # the first token still
    assert (answer.status, answer.body) == (200, LOGGED_OUT)
    for access in (tokens["accessToken"], refreshed.body["accessToken"]):
        response = await client.get("/api/test/user", access)
        assert (response.status, (await response.json())["code"]) == (
            401,
            "token_revoked",
        )
    again = await client.cw_log_out(tokens["refreshToken"])
    unknown = await client.cw_log_out("never-issued")
    assert (again.status, again.body) == (200, LOGGED_OUT)
    assert (unknown.status, unknown.body) == (200, LOGGED_OUT)


# Conditions the seed does not show: the core's status, message and code.


async def test_malformed_and_oversized_bodies(client: Client) -> None:
    response = await client.client.post(
        "/api/logIn", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (response.status, await response.json()) == (
        400,
        refused("Request body is not valid JSON", "validation_error"),
    )
    response = await client.client.post("/api/logIn", data=b"email=x", headers={})
    body = await response.json()
    assert (response.status, body["code"], body["error"]) == (
        415,
        "unsupported_media_type",
        True,
    )
    big = {"userName": "x" * 20000, "email": "m@example.com", "password": PASSWORD}
    response = await client.client.post("/api/signUp", json=big)
    assert (response.status, await response.json()) == (
        413,
        refused("Request body is larger than 16384 bytes", "payload_too_large"),
    )
    answer = await client.call("POST", "/api/signUp", json=[1, 2])
    assert answer.body == refused(
        "Request body must be a JSON object", "validation_error"
    )


async def test_rate_limited_refresh(make_client: MakeClient) -> None:
    limits = {"enabled": True, "refresh_ip_limit": 1}
    client = await make_client(ratelimit=limits)
    tokens = await client.cw_user("mia@example.com")
    assert (await client.cw_refresh(tokens["refreshToken"])).status == 200
    answer = await client.cw_refresh(tokens["refreshToken"])
    assert answer.status == 429
    assert answer.body["error"] is True
    assert answer.body["code"] == "rate_limited"
    assert set(answer.body) == {"error", "message", "code"}
    assert int(answer.headers["Retry-After"]) >= 1


async def test_a_server_error_is_the_seeds_500(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(client.app[keys.AUTH].service, "signin", broken)
    with caplog.at_level(logging.CRITICAL, logger="auth.server"):
        answer = await client.log_in("nina@example.com")
    assert (answer.status, answer.body) == (
        500,
        refused("Internal Server Error", "internal_error"),
    )


async def test_a_disabled_account_is_the_cores_403(client: Client) -> None:
    assert (await client.sign_up("olga@example.com")).status == 201
    storage = client.app[keys.AUTH].storage
    user = await storage.find_user(email="olga@example.com")
    await storage.update_user(user.id, disabled=True, now=clock.epoch())
    answer = await client.log_in("olga@example.com")
    assert (answer.status, answer.body) == (
        403,
        refused("Account is disabled.", "account_disabled"),
    )


async def test_strict_rotation_warns_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    strict = {"strict_rotation": True}
    with caplog.at_level(logging.WARNING, logger="auth.server"):
        create_app(make_settings(tmp_path, tokens=strict, server={"dialects": ALL}))
    assert any(
        "cyberwolves clients" in record.getMessage()
        and "logged out at their second refresh" in record.getMessage()
        for record in caplog.records
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="auth.server"):
        create_app(make_settings(tmp_path, server={"dialects": ALL}))
        create_app(make_settings(tmp_path, tokens=strict))
    assert caplog.records == []
