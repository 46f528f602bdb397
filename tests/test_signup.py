"""POST /api/auth/signup: validation, roles, conflicts, passwords."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, Api, MakeApi, expect_error, make_admin_token

REGISTERED = "User was registered successfully!"


async def test_signup_then_signin(api: Api) -> None:
    response = await api.signup("alice", email="alice@example.com")
    body = await response.json()
    assert response.status == 201
    assert set(body) == {"message", "id"} and body["message"] == REGISTERED
    signed_in = await (await api.signin("alice")).json()
    assert signed_in["id"] == body["id"]
    assert signed_in["roles"] == ["ROLE_USER"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com", "password": PASSWORD}, "username"),
        (
            {"username": "ab", "email": "a@example.com", "password": PASSWORD},
            "username",
        ),
        (
            {"username": "x" * 33, "email": "a@example.com", "password": PASSWORD},
            "username",
        ),
        (
            {"username": "bad name", "email": "a@example.com", "password": PASSWORD},
            "username",
        ),
        ({"username": 123, "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "alice", "password": PASSWORD}, "email"),
        ({"username": "alice", "email": "not-an-email", "password": PASSWORD}, "email"),
        (
            {"username": "alice", "email": ["a@example.com"], "password": PASSWORD},
            "email",
        ),
        ({"username": "alice", "email": "a@example.com"}, "password"),
        (
            {"username": "alice", "email": "a@example.com", "password": "short"},
            "password",
        ),
        (
            {"username": "alice", "email": "a@example.com", "password": 12345678},
            "password",
        ),
        (
            {
                "username": "alice",
                "email": "a@example.com",
                "password": PASSWORD,
                "roles": "admin",
            },
            "roles",
        ),
        (
            {
                "username": "alice",
                "email": "a@example.com",
                "password": PASSWORD,
                "roles": [1],
            },
            "roles",
        ),
    ],
)
async def test_validation_names_the_field(api: Api, body: dict, field: str) -> None:
    response = await api.client.post("/api/auth/signup", json=body)
    error = await expect_error(response, 400, None, "validation_error")
    assert field in error["message"]


async def test_password_too_short_message(api: Api) -> None:
    response = await api.signup("alice", password="seven77")
    await expect_error(
        response, 400, "password must be at least 8 characters", "validation_error"
    )


@pytest.mark.parametrize(
    "password",
    ["password", "12345678", "password123", "alicealice", "alice@example.com"],
)
async def test_common_passwords_are_refused(api: Api, password: str) -> None:
    response = await api.signup("alice", password=password)
    await expect_error(
        response, 400, "password is too common or too easy to guess", "validation_error"
    )


@pytest.mark.parametrize(
    "password",
    [
        "ÄÖÜäöüß-" * 8,  # 64 characters, 120 bytes
        "密码安全性很重要" * 8,  # 64 characters, 192 bytes
        "🔐🗝️🛡️" * 12 + "🔐" * 4,
    ],
)
async def test_long_passwords_of_any_script_count_in_full(
    api: Api, password: str
) -> None:
    password = password[:64]
    assert len(password.encode()) > 72
    assert (await api.signup("alice", password=password)).status == 201
    assert (await api.signin("alice", password)).status == 200
    # Only the last character differs: bcrypt alone would see the same 72 bytes.
    changed = password[:-1] + ("x" if password[-1] != "x" else "y")
    await expect_error(
        await api.signin("alice", changed), 401, None, "invalid_credentials"
    )


async def test_password_over_max_length_is_refused(api: Api) -> None:
    response = await api.signup("alice", password="Zq9!" * 33)
    await expect_error(
        response, 400, "password must be at most 128 characters", "validation_error"
    )


async def test_unknown_role_whoever_asks(api: Api) -> None:
    response = await api.signup("alice", roles=["superuser"])
    await expect_error(
        response, 400, "Failed! Role superuser does not exist!", "unknown_role"
    )
    admin = await make_admin_token(api.app)
    response = await api.signup("alice", roles=["moderator", "root"], token=admin)
    await expect_error(
        response, 400, "Failed! Role root does not exist!", "unknown_role"
    )


@pytest.mark.parametrize("roles", [["admin"], ["moderator"], ["user", "admin"]])
async def test_roles_beyond_user_need_an_admin(api: Api, roles: list[str]) -> None:
    response = await api.signup("mallory", roles=roles)
    await expect_error(response, 403, "Require Admin Role!", "forbidden")
    user_token = (await api.user("bob"))["accessToken"]
    response = await api.signup("mallory", roles=roles, token=user_token)
    await expect_error(response, 403, "Require Admin Role!", "forbidden")
    response = await api.signup("mallory", roles=roles, token="expired.or.bad")
    await expect_error(response, 403, "Require Admin Role!", "forbidden")


async def test_plain_user_roles_need_no_admin(api: Api) -> None:
    assert (await api.signup("alice", roles=["user"])).status == 201
    assert (await api.signup("bob", roles=[])).status == 201


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["moderator"], ["ROLE_USER", "ROLE_MODERATOR"]),
        (["admin"], ["ROLE_USER", "ROLE_ADMIN"]),
        (
            ["admin", "moderator", "admin"],
            ["ROLE_USER", "ROLE_MODERATOR", "ROLE_ADMIN"],
        ),
    ],
)
async def test_admin_grants_roles(
    api: Api, roles: list[str], expected: list[str]
) -> None:
    admin = await make_admin_token(api.app)
    assert (await api.signup("carol", roles=roles, token=admin)).status == 201
    assert (await (await api.signin("carol")).json())["roles"] == expected


async def test_bearer_admin_token_grants_roles(api: Api) -> None:
    admin = await make_admin_token(api.app)
    response = await api.client.post(
        "/api/auth/signup",
        json={
            "username": "dave",
            "email": "d@example.com",
            "password": PASSWORD,
            "roles": ["moderator"],
        },
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert response.status == 201


async def test_username_taken_without_regard_to_case(api: Api) -> None:
    assert (await api.signup("Alice", email="alice@example.com")).status == 201
    response = await api.signup("aLICE", email="other@example.com")
    await expect_error(
        response, 409, "Failed! Username is already in use!", "username_taken"
    )
    response = await api.signup("alice", email="ALICE@example.com")
    await expect_error(
        response, 409, "Failed! Username is already in use!", "username_taken"
    )


async def test_email_taken_without_regard_to_case(api: Api) -> None:
    assert (await api.signup("alice", email="alice@example.com")).status == 201
    response = await api.signup("bob", email="Alice@Example.COM")
    await expect_error(response, 409, "Failed! Email is already in use!", "email_taken")


async def test_concurrent_signups_of_one_name_create_one_user(
    make_api: MakeApi,
) -> None:
    import asyncio

    api = await make_api()
    responses = await asyncio.gather(
        *(api.signup("racer", email=f"racer{n}@example.com") for n in range(5))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [201, 409, 409, 409, 409]
