"""The seeds' content routes and role gating."""

from __future__ import annotations

import pytest

from tests.conftest import Api, expect_error

BOARDS = {
    "/api/test/user": "User Content.",
    "/api/test/mod": "Moderator Content.",
    "/api/test/admin": "Admin Content.",
}


async def test_public_content_needs_no_token(api: Api) -> None:
    response = await api.get("/api/test/all")
    assert response.status == 200
    assert await response.text() == "Public Content."
    assert response.content_type == "text/plain"


async def test_public_route_ignores_a_bad_token(api: Api) -> None:
    response = await api.get("/api/test/all", token="not-a-jwt")
    assert (response.status, await response.text()) == (200, "Public Content.")


@pytest.mark.parametrize(
    ("roles", "allowed"),
    [
        (None, {"/api/test/user"}),
        (["moderator"], {"/api/test/user", "/api/test/mod"}),
        (["admin"], {"/api/test/user", "/api/test/admin"}),
        (["moderator", "admin"], set(BOARDS)),
    ],
)
async def test_boards_by_role(
    api: Api, roles: list[str] | None, allowed: set[str]
) -> None:
    token = (await api.user(roles=roles))["accessToken"]
    for path, text in BOARDS.items():
        response = await api.get(path, token)
        if path in allowed:
            assert (response.status, await response.text()) == (200, text)
        else:
            role = "Moderator" if path.endswith("mod") else "Admin"
            await expect_error(response, 403, f"Require {role} Role!", "forbidden")


async def test_bearer_header_works_like_x_access_token(api: Api) -> None:
    token = (await api.user())["accessToken"]
    response = await api.get("/api/test/user", Authorization=f"Bearer {token}")
    assert (response.status, await response.text()) == (200, "User Content.")
    lower = await api.get("/api/test/user", Authorization=f"bearer {token}")
    assert lower.status == 200
