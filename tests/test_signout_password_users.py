"""Sign-out, password change, the profile and user deletion."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from server import clock, keys
from tests.conftest import PASSWORD, Api, expect_error, make_admin_token

SIGNED_OUT = {"message": "You've been signed out!"}
NEW_PASSWORD = "an entirely new passphrase"


async def test_signout_revokes_the_session(api: Api) -> None:
    signed_in = await api.user()
    response = await api.signout(signed_in["refreshToken"])
    assert (response.status, await response.json()) == (200, SIGNED_OUT)
    await expect_error(
        await api.refresh(signed_in["refreshToken"]),
        403,
        "Refresh token was revoked. Please make a new signin request",
        "refresh_revoked",
    )
    await expect_error(
        await api.get("/api/test/user", signed_in["accessToken"]),
        401,
        "Unauthorized!",
        "token_revoked",
    )


async def test_signout_is_idempotent(api: Api) -> None:
    token = (await api.user())["refreshToken"]
    for candidate in (token, token, "never-issued"):
        response = await api.signout(candidate)
        assert (response.status, await response.json()) == (200, SIGNED_OUT)


async def test_signout_needs_a_token(api: Api) -> None:
    for body in ({}, {"refreshToken": ""}):
        response = await api.client.post("/api/auth/signout", json=body)
        await expect_error(
            response, 403, "Refresh Token is required!", "refresh_missing"
        )


async def test_signout_leaves_other_sessions(api: Api) -> None:
    first = await api.user("alice")
    second = await (await api.signin("alice")).json()
    await api.signout(first["refreshToken"])
    assert (await api.get("/api/test/user", second["accessToken"])).status == 200
    assert (await api.refresh(second["refreshToken"])).status == 200


async def change(api: Api, token: str, current: str, new: str) -> object:
    return await api.client.post(
        "/api/auth/password",
        json={"currentPassword": current, "newPassword": new},
        headers={"x-access-token": token},
    )


async def test_password_change_revokes_other_sessions(api: Api) -> None:
    this = await api.user("alice")
    other = await (await api.signin("alice")).json()
    response = await change(api, this["accessToken"], PASSWORD, NEW_PASSWORD)
    assert (response.status, await response.json()) == (
        200,
        {"message": "Password changed."},
    )
    assert (await api.get("/api/test/user", this["accessToken"])).status == 200
    assert (await api.refresh(this["refreshToken"])).status == 200
    await expect_error(
        await api.get("/api/test/user", other["accessToken"]),
        401,
        None,
        "token_revoked",
    )
    await expect_error(
        await api.refresh(other["refreshToken"]), 403, None, "refresh_revoked"
    )
    await expect_error(await api.signin("alice"), 401, None, "invalid_credentials")
    assert (await api.signin("alice", NEW_PASSWORD)).status == 200


async def test_wrong_current_password_is_400_not_401(api: Api) -> None:
    token = (await api.user("alice"))["accessToken"]
    response = await change(api, token, "not my password", NEW_PASSWORD)
    await expect_error(
        response, 400, "Current password is incorrect.", "invalid_credentials"
    )
    assert (await api.signin("alice")).status == 200


async def test_a_stale_check_cannot_overwrite_a_newer_password(api: Api) -> None:
    """Issue 16: change A has verified the current password and is held before its
    write while change B, from the same password, completes. A's write is refused as a
    wrong current password (it no longer is current); B's password stands."""
    first = await api.user("alice")
    second = await (await api.signin("alice")).json()
    storage = api.app[keys.AUTH].storage
    store_change = storage.change_password
    checked, release = asyncio.Event(), asyncio.Event()

    async def hold_the_first(*args: Any) -> list[str] | None:
        if not checked.is_set():
            checked.set()
            await release.wait()
        return await store_change(*args)

    storage.change_password = hold_the_first  # type: ignore[method-assign]
    held = asyncio.ensure_future(
        change(api, first["accessToken"], PASSWORD, "the first new passphrase")
    )
    await checked.wait()
    done = await change(api, second["accessToken"], PASSWORD, NEW_PASSWORD)
    assert (done.status, await done.json()) == (200, {"message": "Password changed."})
    release.set()
    await expect_error(
        await held, 400, "Current password is incorrect.", "invalid_credentials"
    )
    for password in (PASSWORD, "the first new passphrase"):
        await expect_error(
            await api.signin("alice", password), 401, None, "invalid_credentials"
        )
    assert (await api.signin("alice", NEW_PASSWORD)).status == 200
    await expect_error(
        await api.get("/api/test/user", first["accessToken"]),
        401,
        "Unauthorized!",
        "token_revoked",
    )
    assert (await api.get("/api/test/user", second["accessToken"])).status == 200


@pytest.mark.parametrize("new", ["short", "password123"])
async def test_new_password_follows_the_rules(api: Api, new: str) -> None:
    token = (await api.user("alice"))["accessToken"]
    error = await expect_error(
        await change(api, token, PASSWORD, new), 400, None, "validation_error"
    )
    assert "newPassword" in error["message"]


async def test_password_change_needs_a_token(api: Api) -> None:
    response = await api.client.post(
        "/api/auth/password",
        json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
    )
    await expect_error(response, 403, "No token provided!", "token_missing")


async def test_me(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    created = clock.epoch()
    monkeypatch.setattr(clock, "now", lambda: float(created))  # held: exact times
    signed_in = await api.user("alice", roles=["moderator"])
    response = await api.get("/api/users/me", signed_in["accessToken"])
    body = await response.json()
    assert response.status == 200
    assert body["id"] == signed_in["id"]
    assert (body["username"], body["email"]) == ("alice", "alice@example.com")
    assert body["roles"] == ["ROLE_USER", "ROLE_MODERATOR"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["createdAt"])
    assert body["createdAt"] == clock.iso_utc(created)
    assert set(body) == {"id", "username", "email", "roles", "disabled", "createdAt"}


async def test_deleted_users_refresh_token_is_revoked(api: Api) -> None:
    signed_in = await api.user("alice")
    admin = await make_admin_token(api.app)
    path = f"/api/users/{signed_in['id']}"
    response = await api.client.delete(path, headers={"x-access-token": admin})
    assert response.status == 200
    await expect_error(
        await api.refresh(signed_in["refreshToken"]), 403, None, "refresh_revoked"
    )
    response = await api.client.delete(path, headers={"x-access-token": admin})
    await expect_error(response, 404, "User not found.", "not_found")
    await expect_error(await api.signin("alice"), 401, None, "invalid_credentials")


async def test_only_admins_delete_users(api: Api) -> None:
    signed_in = await api.user("alice")
    response = await api.client.delete(
        f"/api/users/{signed_in['id']}",
        headers={"x-access-token": signed_in["accessToken"]},
    )
    await expect_error(response, 403, "Require Admin Role!", "forbidden")
