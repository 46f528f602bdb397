"""POST /api/auth/signin."""

from __future__ import annotations

import jwt
import pytest

from server import keys
from tests.conftest import PASSWORD, TEST_SECRET, Api, MakeApi, expect_error

INVALID = "Invalid username or password."


async def test_signin_body(api: Api) -> None:
    signup = await (await api.signup("alice", email="alice@example.com")).json()
    response = await api.signin("alice")
    body = await response.json()
    assert response.status == 200
    assert set(body) == {
        "id",
        "username",
        "email",
        "roles",
        "accessToken",
        "refreshToken",
        "tokenType",
        "expiresIn",
    }
    assert (body["id"], body["username"], body["email"]) == (
        signup["id"],
        "alice",
        "alice@example.com",
    )
    assert (body["roles"], body["tokenType"], body["expiresIn"]) == (
        ["ROLE_USER"],
        "Bearer",
        900,
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert len(body["refreshToken"]) >= 43  # 256 bits, base64url


async def test_access_token_claims(api: Api) -> None:
    body = await api.user("alice")
    claims = jwt.decode(
        body["accessToken"], TEST_SECRET, algorithms=["HS256"], issuer="auth-server"
    )
    assert set(claims) == {"sub", "roles", "sid", "jti", "iat", "exp", "iss", "typ"}
    assert (claims["sub"], claims["roles"], claims["typ"]) == (
        body["id"],
        ["user"],
        "access",
    )
    assert claims["exp"] - claims["iat"] == 900
    header = jwt.get_unverified_header(body["accessToken"])
    assert header["alg"] == "HS256"
    assert header["kid"] == api.app[keys.AUTH].access_tokens.ring.current.kid


async def test_expires_in_follows_the_setting(make_api: MakeApi) -> None:
    api = await make_api(tokens={"access_ttl": 120})
    body = await api.user()
    assert body["expiresIn"] == 120


async def test_signin_by_email_without_regard_to_case(api: Api) -> None:
    await api.signup("alice", email="Alice@Example.com")
    response = await api.client.post(
        "/api/auth/signin", json={"email": "alice@example.COM", "password": PASSWORD}
    )
    assert response.status == 200
    assert (await response.json())["username"] == "alice"


async def test_username_is_case_insensitive(api: Api) -> None:
    await api.signup("Alice")
    assert (await api.signin("ALICE")).status == 200


async def test_unknown_user_and_wrong_password_answer_alike(api: Api) -> None:
    await api.signup("alice")
    wrong = await api.signin("alice", "wrong password!")
    unknown = await api.signin("nobody", "wrong password!")
    for response in (wrong, unknown):
        await expect_error(response, 401, INVALID, "invalid_credentials")
    assert dict(wrong.headers).keys() == dict(unknown.headers).keys()


async def test_each_signin_is_its_own_session(api: Api) -> None:
    await api.signup("alice")
    first = await (await api.signin("alice")).json()
    second = await (await api.signin("alice")).json()
    assert first["refreshToken"] != second["refreshToken"]
    sid = [
        jwt.decode(b["accessToken"], options={"verify_signature": False})["sid"]
        for b in (first, second)
    ]
    assert sid[0] != sid[1]
    assert (await api.signout(first["refreshToken"])).status == 200
    assert (await api.refresh(second["refreshToken"])).status == 200


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"username": "alice"},
        {"username": 5, "password": PASSWORD},
        {"username": "alice", "password": None},
        {"username": "", "password": PASSWORD},
    ],
)
async def test_signin_validation(api: Api, body: dict) -> None:
    response = await api.client.post("/api/auth/signin", json=body)
    await expect_error(response, 400, None, "validation_error")
