"""Privilege escalation: roles at sign-up need a live admin token, duplicate keys and
look-alike role names are refused, and extra fields anywhere are ignored."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import jwt
import pytest

from server import keys
from tests.conftest import PASSWORD, Api, expect_error, make_admin_token
from tests.security.helpers import (
    REQUIRED_ADMIN,
    access_claims,
    b64url_json,
    compose,
    server_signed,
    token_parts,
)

pytestmark = pytest.mark.parametrize("backend", ["memory"])
JSON = {"Content-Type": "application/json"}
TokenMaker = Callable[[Api], Awaitable[str | None]]


async def _no_token(api: Api) -> str | None:
    return None


async def _user(api: Api) -> str | None:
    return (await api.user("plain"))["accessToken"]


async def _moderator(api: Api) -> str | None:
    return (await api.user("moddy", roles=["moderator"]))["accessToken"]


async def _expired_admin(api: Api) -> str | None:
    past = int(time.time()) - 3600
    claims = access_claims(
        api.app, sub="admin-id", roles=["user", "admin"], iat=past, exp=past + 60
    )
    return server_signed(api.app, claims)


async def _admin_forged_with_another_secret(api: Api) -> str | None:
    kid = api.app[keys.AUTH].access_tokens.ring.current.kid
    claims = access_claims(api.app, roles=["user", "admin"])
    return jwt.encode(claims, "x" * 48, "HS256", headers={"kid": kid})


async def _user_token_tampered_to_admin(api: Api) -> str | None:
    header, payload, signature = token_parts((await api.user("plain"))["accessToken"])
    payload["roles"] = ["user", "admin"]
    return f"{b64url_json(header)}.{b64url_json(payload)}.{signature}"


async def _unsigned_admin(api: Api) -> str | None:
    kid = api.app[keys.AUTH].access_tokens.ring.current.kid
    return compose({"alg": "none", "kid": kid}, access_claims(api.app, roles=["admin"]))


async def _signed_out_admin(api: Api) -> str | None:
    await make_admin_token(api.app)  # creates "root-admin" with PASSWORD
    body = await (await api.signin("root-admin")).json()
    assert body["roles"] == ["ROLE_USER", "ROLE_ADMIN"]
    assert (await api.signout(body["refreshToken"])).status == 200
    return body["accessToken"]


@pytest.mark.parametrize(
    "make_token",
    [
        _no_token,
        _user,
        _moderator,
        _expired_admin,
        _admin_forged_with_another_secret,
        _user_token_tampered_to_admin,
        _unsigned_admin,
        _signed_out_admin,
    ],
)
@pytest.mark.parametrize("roles", [["admin"], ["moderator"]])
async def test_roles_need_a_live_admin_token(
    api: Api, make_token: TokenMaker, roles: list[str]
) -> None:
    token = await make_token(api)
    response = await api.signup("mallory", roles=roles, token=token)
    await expect_error(response, 403, REQUIRED_ADMIN, "forbidden")
    await expect_error(await api.signin("mallory"), 401, None, "invalid_credentials")
    # The name is still free: a live admin token makes the very same request succeed.
    response = await api.signup(
        "mallory", roles=roles, token=await make_admin_token(api.app)
    )
    assert response.status == 201


@pytest.mark.parametrize(
    "raw",
    [
        b'{"username": "mallory", "email": "m@example.com", "password": "%s",'
        b' "roles": ["user"], "roles": ["admin"]}',
        b'{"username": "mallory", "email": "m@example.com", "password": "%s",'
        b' "roles": ["user"], "rol\\u0065s": ["admin"]}',
        b'{"username": "mallory", "email": "m@example.com", "password": "%s",'
        b' "roles": ["admin"], "roles": ["user"]}',
    ],
)
async def test_duplicate_keys_are_refused(api: Api, raw: bytes) -> None:
    body = raw.replace(b"%s", PASSWORD.encode())
    response = await api.client.post("/api/auth/signup", data=body, headers=JSON)
    await expect_error(
        response, 400, "Duplicate key 'roles' in request body", "validation_error"
    )
    await expect_error(await api.signin("mallory"), 401, None, "invalid_credentials")


@pytest.mark.parametrize(
    "role",
    [
        "ADMIN",
        "Admin",
        "ROLE_ADMIN",
        "role_admin",
        " admin",
        "admin ",
        "admin\u0000",
        "\u0430dmin",
        "ROLE_USER",
        "*",
        "",
    ],
)
@pytest.mark.parametrize("as_admin", [False, True])
async def test_role_names_are_exact(api: Api, role: str, as_admin: bool) -> None:
    token = await make_admin_token(api.app) if as_admin else None
    response = await api.signup("mallory", roles=["user", role], token=token)
    await expect_error(
        response, 400, f"Failed! Role {role} does not exist!", "unknown_role"
    )
    await expect_error(await api.signin("mallory"), 401, None, "invalid_credentials")


async def test_extra_signup_fields_are_ignored(api: Api) -> None:
    await make_admin_token(api.app)  # a user with id "admin-id" exists
    before = int(time.time())
    response = await api.client.post(
        "/api/auth/signup",
        json={
            "username": "mallory",
            "email": "m@example.com",
            "password": PASSWORD,
            "id": "admin-id",
            "isAdmin": True,
            "is_admin": True,
            "role": "admin",
            "Roles": ["admin"],
            "ROLES": ["admin"],
            "roles ": ["admin"],
            "createdAt": "1970-01-01T00:00:00Z",
            "passwordHash": "$2b$04$" + "a" * 53,
            "__proto__": {"roles": ["admin"]},
        },
    )
    body = await response.json()
    assert (response.status, body["message"]) == (
        201,
        "User was registered successfully!",
    )
    assert body["id"] != "admin-id"
    signed_in = await (await api.signin("mallory")).json()
    assert signed_in["roles"] == ["ROLE_USER"]
    assert token_parts(signed_in["accessToken"])[1]["roles"] == ["user"]
    me = await (await api.get("/api/users/me", signed_in["accessToken"])).json()
    assert (me["id"], me["roles"]) == (body["id"], ["ROLE_USER"])
    assert me["createdAt"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before))
    response = await api.get("/api/test/admin", signed_in["accessToken"])
    await expect_error(response, 403, REQUIRED_ADMIN, "forbidden")
    admin = await api.app[keys.AUTH].storage.get_user("admin-id")
    assert admin is not None and admin.username == "root-admin"


async def test_extra_fields_on_other_routes_grant_nothing(api: Api) -> None:
    await api.signup("mallory")
    response = await api.client.post(
        "/api/auth/signin",
        json={
            "username": "mallory",
            "password": PASSWORD,
            "roles": ["admin"],
            "isAdmin": True,
        },
    )
    signed_in = await response.json()
    assert (response.status, signed_in["roles"]) == (200, ["ROLE_USER"])
    response = await api.client.post(
        "/api/auth/refreshtoken",
        json={
            "refreshToken": signed_in["refreshToken"],
            "roles": ["admin"],
            "sub": "admin-id",
        },
    )
    refreshed = await response.json()
    assert response.status == 200
    assert token_parts(refreshed["accessToken"])[1]["roles"] == ["user"]
    response = await api.client.post(
        "/api/auth/password",
        json={
            "currentPassword": PASSWORD,
            "newPassword": "an entirely new passphrase",
            "roles": ["admin"],
            "userId": "admin-id",
        },
        headers={"x-access-token": refreshed["accessToken"]},
    )
    assert (response.status, await response.json()) == (
        200,
        {"message": "Password changed."},
    )
    again = await api.signin("mallory", "an entirely new passphrase")
    assert (await again.json())["roles"] == ["ROLE_USER"]
