"""User administration (API.md "Administration (role admin)"): the list with cursor paging
and search, read, PATCH roles / disabled, DELETE, `last_admin`; on every backend."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from typing import Any

import aiohttp
import pytest

from server import clock, keys
from storage import User
from tests.conftest import PASSWORD, Api, expect_error, make_admin_token

USER_KEYS = {"id", "username", "email", "roles", "disabled", "createdAt"}
BAD_LIMIT = "limit must be an integer from 1 to 100"
BAD_CURSOR = "cursor is not valid: pass the next of the previous page"
USER_NOT_FOUND = ("User not found.", "not_found")
LAST_ADMIN = ("The last admin cannot be removed.", "last_admin")
REVOKED_REFRESH = "Refresh token was revoked. Please make a new signin request"


def auth(token: str) -> dict[str, str]:
    return {"x-access-token": token}


async def listing(api: Api, token: str, query: str = "") -> Any:
    return await api.client.get(f"/api/users{query}", headers=auth(token))


async def page(api: Api, token: str, query: str = "") -> dict[str, Any]:
    response = await listing(api, token, query)
    body = await response.json()
    assert response.status == 200, body
    assert set(body) == {"users", "next"}
    for user in body["users"]:
        assert set(user) == USER_KEYS
    return body


async def patch(api: Api, token: str, user_id: str, body: Any) -> Any:
    return await api.client.patch(
        f"/api/users/{user_id}", json=body, headers=auth(token)
    )


async def add_users(api: Api, count: int, created_at: int, prefix: str) -> list[User]:
    """Users made directly in storage (no sign-in needed): fast, with chosen times."""
    storage = api.app[keys.AUTH].storage
    made = []
    for n in range(count):
        user = User(
            uuid.uuid4().hex,
            f"{prefix}{n}",
            f"{prefix}{n}@example.com",
            "not-a-hash",
            ("user",),
            created_at,
        )
        await storage.create_user(user)
        made.append(user)
    return made


def cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


async def expect_revoked(api: Api, signed_in: dict) -> None:
    await expect_error(
        await api.get("/api/test/user", signed_in["accessToken"]),
        401,
        "Unauthorized!",
        "token_revoked",
    )
    await expect_error(
        await api.refresh(signed_in["refreshToken"]),
        403,
        REVOKED_REFRESH,
        "refresh_revoked",
    )


# GET /api/users


async def test_list_is_ordered_and_shaped(api: Api) -> None:
    admin = await make_admin_token(api.app)  # root-admin, made at time 0
    alice = await api.user("alice", roles=["moderator"])
    body = await page(api, admin)
    assert body["next"] is None
    root, listed = body["users"]
    assert (root["id"], root["username"], root["roles"]) == (
        "admin-id",
        "root-admin",
        ["ROLE_USER", "ROLE_ADMIN"],
    )
    assert root["createdAt"] == "1970-01-01T00:00:00Z"
    assert listed == {
        "id": alice["id"],
        "username": "alice",
        "email": "alice@example.com",
        "roles": ["ROLE_USER", "ROLE_MODERATOR"],
        "disabled": False,
        "createdAt": listed["createdAt"],
    }
    # `<user>` everywhere: the list, the read and /api/users/me agree.
    one = await api.client.get(f"/api/users/{alice['id']}", headers=auth(admin))
    assert (one.status, await one.json()) == (200, listed)
    me = await api.get("/api/users/me", alice["accessToken"])
    assert (me.status, await me.json()) == (200, listed)


async def test_pages_follow_created_at_then_id(api: Api) -> None:
    admin = await make_admin_token(api.app)
    now = clock.epoch()
    made = await add_users(api, 4, now, "tie") + await add_users(api, 3, now - 5, "old")
    expected = ["admin-id"] + [
        u.id for u in sorted(made, key=lambda u: (u.created_at, u.id))
    ]
    seen, cursor, pages = [], "", 0
    while True:
        body = await page(api, admin, f"?limit=3&cursor={cursor}")
        seen += [u["id"] for u in body["users"]]
        pages += 1
        if body["next"] is None:
            break
        assert len(body["users"]) == 3
        cursor = body["next"]
    assert seen == expected
    assert pages == 3  # 8 users: 3 + 3 + 2, the last page says null


async def test_default_limit_is_50_and_100_is_the_most(api: Api) -> None:
    admin = await make_admin_token(api.app)
    await add_users(api, 100, clock.epoch(), "u")
    first = await page(api, admin)
    assert len(first["users"]) == 50 and first["next"] is not None
    # The contract's own spelling, every parameter empty: the first page, by default.
    assert await page(api, admin, "?limit=&cursor=&q=") == first
    everyone = await page(api, admin, "?limit=100")
    assert len(everyone["users"]) == 100 and everyone["next"] is not None
    rest = await page(api, admin, f"?limit=100&cursor={everyone['next']}")
    assert (len(rest["users"]), rest["next"]) == (1, None)
    exact = await page(api, admin, "?limit=1&q=root")
    assert ([u["id"] for u in exact["users"]], exact["next"]) == (["admin-id"], None)


async def test_search_is_a_case_insensitive_substring(api: Api) -> None:
    admin = await make_admin_token(api.app)
    for name, email in [
        ("Alice", "alice@example.com"),
        ("bob", "bob@Malice.example"),
        ("carol", "carol@example.org"),
        ("dan_1", "d%n@example.net"),
    ]:
        clock.advance(1)  # listed by creation time
        assert (await api.signup(name, email=email)).status == 201

    async def names(query: str) -> list[str]:
        return [u["username"] for u in (await page(api, admin, query))["users"]]

    assert await names("?q=LICE") == ["Alice", "bob"]
    assert await names("?q=example.org") == ["carol"]
    assert await names("?q=%25") == ["dan_1"]  # literal: not a LIKE wildcard
    assert await names("?q=_") == ["dan_1"]
    assert await names("?q=nobody") == []
    assert await names("?q=%00") == []
    assert await names("?q=") == ["root-admin", "Alice", "bob", "carol", "dan_1"]
    first = await page(api, admin, "?q=lice&limit=1")
    assert [u["username"] for u in first["users"]] == ["Alice"]
    rest = await page(api, admin, f"?q=lice&limit=1&cursor={first['next']}")
    assert ([u["username"] for u in rest["users"]], rest["next"]) == (["bob"], None)


async def test_a_bad_limit_is_a_validation_error(api: Api) -> None:
    admin = await make_admin_token(api.app)
    for limit in ["0", "101", "-1", "abc", "5.0", "+5", "%205", "1_0", "%EF%BC%91"]:
        response = await listing(api, admin, f"?limit={limit}")
        await expect_error(response, 400, BAD_LIMIT, "validation_error")


async def test_bad_cursors_and_repeats_are_validation_errors(api: Api) -> None:
    admin = await make_admin_token(api.app)
    cursors = [
        "garbage!",
        "%C3%A9",
        cursor_of({"a": 1, "b": 2}),
        cursor_of([1]),
        cursor_of(["1", "x"]),
        cursor_of([1.5, "x"]),
        cursor_of([True, "x"]),
        cursor_of([1, 5]),
        cursor_of([2**60, "x"]),
        cursor_of([1, "x" * 129]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ]
    for cursor in cursors:
        await expect_error(
            await listing(api, admin, f"?cursor={cursor}"),
            400,
            BAD_CURSOR,
            "validation_error",
        )
    cases = [
        ("?cursor=" + "A" * 257, "cursor must be at most 256 characters"),
        ("?q=" + "a" * 255, "q must be at most 254 characters"),
        ("?limit=5&limit=6", "limit must be given once"),
        ("?q=a&q=b", "q must be given once"),
    ]
    for query, message in cases:
        await expect_error(
            await listing(api, admin, query), 400, message, "validation_error"
        )
    # Parameters the route does not know are ignored; a forged but well-formed cursor
    # only moves the start.
    assert (await page(api, admin, "?sort=desc"))["users"][0]["id"] == "admin-id"
    assert (await page(api, admin, f"?cursor={cursor_of([0, 'admin-id'])}")) == {
        "users": [],
        "next": None,
    }


async def test_paging_visits_every_user_once_under_concurrent_signups(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between pages, sign-ups land concurrently in the boundary's second (before or
    after the boundary, as their random ids fall) and in a later second. The server's
    clock is held, so where each lands is known, not left to timing: the pages list
    exactly the users that existed throughout plus those that landed after the
    boundary, each once and in order."""
    admin = await make_admin_token(api.app)
    second = clock.epoch()
    frozen = [float(second)]
    monkeypatch.setattr(clock, "now", lambda: frozen[0])
    existing = await add_users(api, 10, second - 1, "old") + await add_users(
        api, 20, second, "tie"
    )
    position = {"admin-id": (0, "admin-id")} | {
        u.id: (u.created_at, u.id) for u in existing
    }
    listed = ["admin-id", *(u.id for u in existing)]  # what the pages must show
    names = iter(range(1000))

    async def sign_up(at: int, boundary: tuple[int, str]) -> None:
        response = await api.signup(f"new{next(names)}")
        body = await response.json()
        assert response.status == 201, body
        position[body["id"]] = (at, body["id"])
        if position[body["id"]] > boundary:
            listed.append(body["id"])

    seen: list[str] = []
    cursor = ""
    for pages in range(1, 100):
        body = await page(api, admin, f"?limit=4&cursor={cursor}")
        seen += [u["id"] for u in body["users"]]
        if body["next"] is None:
            break
        cursor = body["next"]
        if pages <= 6:
            boundary = position[seen[-1]]
            frozen[0] = second
            await asyncio.gather(sign_up(second, boundary), sign_up(second, boundary))
            frozen[0] = second + 1
            await sign_up(second + 1, boundary)
    assert seen == sorted(listed, key=position.__getitem__)
    assert len(position) == 1 + 30 + 3 * 6
    everyone = await page(api, admin, "?limit=100")
    assert [u["id"] for u in everyone["users"]] == sorted(
        position, key=position.__getitem__
    )


async def test_the_admin_routes_need_the_admin_role(api: Api) -> None:
    user = await api.user("alice")
    token, path = user["accessToken"], f"/api/users/{user['id']}"
    for method, target, body in [
        ("GET", "/api/users", None),
        ("GET", path, None),
        ("PATCH", path, {"disabled": True}),
        ("DELETE", path, None),
    ]:
        response = await api.client.request(
            method, target, json=body, headers=auth(token)
        )
        await expect_error(response, 403, "Require Admin Role!", "forbidden")
        response = await api.client.request(method, target, json=body)
        await expect_error(response, 403, "No token provided!", "token_missing")
    await expect_error(
        await listing(api, "not-a-jwt"), 401, "Unauthorized!", "token_invalid"
    )
    # Refused before any change: the user is still enabled.
    assert (await api.get("/api/test/user", token)).status == 200


# GET /api/users/{id}


async def test_an_unknown_user_is_not_found(api: Api) -> None:
    admin = await make_admin_token(api.app)
    for user_id in ("0" * 32, "nope", "%00"):
        response = await api.client.get(f"/api/users/{user_id}", headers=auth(admin))
        await expect_error(response, 404, *USER_NOT_FOUND)
        await expect_error(
            await patch(api, admin, user_id, {"disabled": True}), 404, *USER_NOT_FOUND
        )
        response = await api.client.delete(f"/api/users/{user_id}", headers=auth(admin))
        await expect_error(response, 404, *USER_NOT_FOUND)


# PATCH /api/users/{id}


async def test_patch_validation(api: Api) -> None:
    admin = await make_admin_token(api.app)
    user_id = (await api.user("alice"))["id"]
    cases = [
        ({}, "roles or disabled is required"),
        ({"roles": None}, "roles or disabled is required"),
        ({"disabled": "yes"}, "disabled must be true or false"),
        ({"disabled": 1}, "disabled must be true or false"),
        ({"roles": "admin"}, "roles must be a list of role names"),
        ({"roles": [1]}, "roles must be a list of role names"),
        ([], "Request body must be a JSON object"),
    ]
    for body, message in cases:
        await expect_error(
            await patch(api, admin, user_id, body), 400, message, "validation_error"
        )
    await expect_error(
        await patch(api, admin, user_id, {"roles": ["moderator", "superuser"]}),
        400,
        "Failed! Role superuser does not exist!",
        "unknown_role",
    )
    broken = await api.client.patch(
        f"/api/users/{user_id}",
        data=b"{",
        headers={**auth(admin), "Content-Type": "application/json"},
    )
    await expect_error(
        broken, 400, "Request body is not valid JSON", "validation_error"
    )
    unchanged = await api.client.get(f"/api/users/{user_id}", headers=auth(admin))
    body = await unchanged.json()
    assert (body["roles"], body["disabled"]) == (["ROLE_USER"], False)


async def test_a_role_given_revokes_nothing(api: Api) -> None:
    admin = await make_admin_token(api.app)
    alice = await api.user("alice")
    response = await patch(api, admin, alice["id"], {"roles": ["moderator"]})
    body = await response.json()
    assert (response.status, body["roles"], body["disabled"]) == (
        200,
        ["ROLE_USER", "ROLE_MODERATOR"],
        False,
    )
    # The old token keeps working with its old roles until the next refresh.
    assert (await api.get("/api/test/user", alice["accessToken"])).status == 200
    await expect_error(
        await api.get("/api/test/mod", alice["accessToken"]),
        403,
        "Require Moderator Role!",
        "forbidden",
    )
    refreshed = await (await api.refresh(alice["refreshToken"])).json()
    assert (await api.get("/api/test/mod", refreshed["accessToken"])).status == 200


async def test_a_role_taken_away_revokes_every_session(api: Api) -> None:
    admin = await make_admin_token(api.app)
    first = await api.user("mod", roles=["moderator"])
    second = await (await api.signin("mod")).json()
    bystander = await api.user("bob", roles=["moderator"])
    response = await patch(api, admin, first["id"], {"roles": []})
    body = await response.json()
    assert (response.status, body["roles"]) == (200, ["ROLE_USER"])
    for signed_in in (first, second):
        await expect_revoked(api, signed_in)
    assert (await api.get("/api/test/mod", bystander["accessToken"])).status == 200
    again = await (await api.signin("mod")).json()
    assert again["roles"] == ["ROLE_USER"]


async def test_disabling_revokes_and_refuses_sign_in(api: Api) -> None:
    admin = await make_admin_token(api.app)
    first = await api.user("alice")
    second = await (await api.signin("alice")).json()
    response = await patch(api, admin, first["id"], {"disabled": True})
    body = await response.json()
    assert (response.status, body["disabled"], body["roles"]) == (
        200,
        True,
        ["ROLE_USER"],
    )
    for signed_in in (first, second):
        await expect_revoked(api, signed_in)
    await expect_error(
        await api.signin("alice"), 403, "Account is disabled.", "account_disabled"
    )
    await expect_error(
        await api.signin("alice", "a wrong passphrase here"),
        401,
        "Invalid username or password.",
        "invalid_credentials",
    )
    listed = await page(api, admin, "?q=alice")
    assert [u["disabled"] for u in listed["users"]] == [True]
    response = await patch(api, admin, first["id"], {"disabled": False})
    assert (await response.json())["disabled"] is False
    assert (await api.signin("alice", PASSWORD)).status == 200


async def test_roles_and_disabled_in_one_change(api: Api) -> None:
    admin = await make_admin_token(api.app)
    alice = await api.user("alice")
    response = await patch(
        api, admin, alice["id"], {"roles": ["admin"], "disabled": True}
    )
    body = await response.json()
    assert (response.status, body["roles"], body["disabled"]) == (
        200,
        ["ROLE_USER", "ROLE_ADMIN"],
        True,
    )
    await expect_revoked(api, alice)


# last_admin


async def test_the_only_admin_cannot_be_demoted_disabled_or_deleted(api: Api) -> None:
    admin = await make_admin_token(api.app)
    for body in ({"roles": ["user"]}, {"disabled": True}, {"roles": ["moderator"]}):
        await expect_error(await patch(api, admin, "admin-id", body), 409, *LAST_ADMIN)
    response = await api.client.delete("/api/users/admin-id", headers=auth(admin))
    await expect_error(response, 409, *LAST_ADMIN)
    # Nothing changed and nothing was revoked.
    assert (await api.get("/api/test/admin", admin)).status == 200
    root = await api.client.get("/api/users/admin-id", headers=auth(admin))
    body = await root.json()
    assert (body["roles"], body["disabled"]) == (["ROLE_USER", "ROLE_ADMIN"], False)
    # Giving the only admin more roles, or enabling it, is no removal.
    response = await patch(
        api, admin, "admin-id", {"roles": ["moderator", "admin"], "disabled": False}
    )
    assert response.status == 200


async def test_a_disabled_admin_does_not_count(api: Api) -> None:
    admin = await make_admin_token(api.app)
    other = await api.user("other-admin", roles=["admin"])
    assert (await patch(api, admin, other["id"], {"disabled": True})).status == 200
    await expect_error(
        await patch(api, admin, "admin-id", {"roles": ["user"]}), 409, *LAST_ADMIN
    )
    # Enabled again, it does: the first admin may step down (and its tokens end).
    assert (await patch(api, admin, other["id"], {"disabled": False})).status == 200
    response = await patch(api, admin, "admin-id", {"roles": ["user"]})
    assert (await response.json())["roles"] == ["ROLE_USER"]
    await expect_error(
        await api.get("/api/test/admin", admin), 401, "Unauthorized!", "token_revoked"
    )
    successor = await (await api.signin("other-admin")).json()
    await expect_error(
        await patch(api, successor["accessToken"], other["id"], {"roles": []}),
        409,
        *LAST_ADMIN,
    )


# DELETE /api/users/{id}


async def test_delete_revokes_and_forgets(api: Api) -> None:
    admin = await make_admin_token(api.app)
    alice = await api.user("alice")
    path = f"/api/users/{alice['id']}"
    response = await api.client.delete(path, headers=auth(admin))
    assert (response.status, await response.json()) == (
        200,
        {"message": "User was deleted."},
    )
    await expect_revoked(api, alice)
    response = await api.client.get(path, headers=auth(admin))
    await expect_error(response, 404, *USER_NOT_FOUND)
    response = await api.client.delete(path, headers=auth(admin))
    await expect_error(response, 404, *USER_NOT_FOUND)


# events and the document


async def test_revocations_are_security_events(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="auth.security")
    admin = await make_admin_token(api.app)
    alice = await api.user("alice")
    await api.signin("alice")
    await patch(api, admin, alice["id"], {"disabled": True})
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "auth.security"
    ]
    updated, disabled = [
        e for e in lines if e["event"] in ("user_updated", "user_disabled")
    ]
    assert (updated["user_id"], updated["by"], updated["disabled"]) == (
        alice["id"],
        "admin-id",
        True,
    )
    assert (disabled["event"], disabled["user_id"], disabled["revoked_sessions"]) == (
        "user_disabled",
        alice["id"],
        2,
    )


async def test_the_document_describes_the_routes(api: Api) -> None:
    document = await (await api.client.get("/api/openapi.json")).json()
    paths = document["paths"]
    assert set(paths["/api/auth/sessions"]) == {"get", "delete"}
    assert set(paths["/api/auth/sessions/{id}"]) == {"delete"}
    assert set(paths["/api/users"]) == {"get"}
    assert set(paths["/api/users/{id}"]) == {"get", "patch", "delete"}
    limit = paths["/api/users"]["get"]["parameters"][0]
    assert (limit["name"], limit["in"], limit["schema"]["maximum"]) == (
        "limit",
        "query",
        100,
    )
    schemas = document["components"]["schemas"]
    assert set(schemas["UserRecord"]["properties"]) == USER_KEYS
    assert set(schemas["UserPatchBody"]["properties"]) == {"roles", "disabled"}


async def test_disabling_closes_the_users_websockets(make_api: Any) -> None:
    api = await make_api(tokens={"revocation_poll": 0.1})
    admin = await make_admin_token(api.app)
    alice = await api.user("alice")
    ws = await api.client.ws_connect(
        "/api/ws", headers={"x-access-token": alice["accessToken"]}
    )
    assert (await ws.receive_json())["type"] == "hello"
    assert (await patch(api, admin, alice["id"], {"disabled": True})).status == 200
    closed = await asyncio.wait_for(ws.receive(), timeout=5)  # a bound, not a timing
    assert (closed.type, closed.data, closed.extra) == (
        aiohttp.WSMsgType.CLOSE,
        4401,
        "session revoked",
    )
