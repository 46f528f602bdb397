"""The example host app (examples/notes): notes per user, an admin-only route, the
app's own error format, and the auth routes under /auth."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from examples.notes.app import create_app
from server import Auth
from tests.conftest import PASSWORD, make_admin_token, make_settings


@pytest.fixture
async def notes(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> TestClient:
    return await aiohttp_client(create_app(Auth(make_settings(tmp_path, "sqlite"))))


async def _token(client: TestClient, name: str) -> str:
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    assert (await client.post("/auth/signup", json=body)).status == 201
    signin = {"username": name, "password": PASSWORD}
    return (await (await client.post("/auth/signin", json=signin)).json())[
        "accessToken"
    ]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_each_user_sees_only_their_notes(notes: TestClient) -> None:
    alice, bob = await _token(notes, "alice"), await _token(notes, "bob")
    created = await notes.post(
        "/notes", json={"text": "buy milk"}, headers=_bearer(alice)
    )
    assert (created.status, await created.json()) == (
        201,
        {"id": 1, "text": "buy milk"},
    )
    await notes.post("/notes", json={"text": "call mum"}, headers=_bearer(bob))
    mine = await (await notes.get("/notes", headers=_bearer(alice))).json()
    assert mine == {"notes": [{"id": 1, "text": "buy milk"}]}
    theirs = await (await notes.get("/notes", headers=_bearer(bob))).json()
    assert theirs == {"notes": [{"id": 2, "text": "call mum"}]}


async def test_guards_and_the_apps_own_errors(notes: TestClient) -> None:
    alice = await _token(notes, "alice")
    anonymous = await notes.get("/notes")
    assert (anonymous.status, await anonymous.json()) == (
        403,
        {"message": "No token provided!", "code": "token_missing"},
    )
    bad = await notes.post("/notes", json={"text": ""}, headers=_bearer(alice))
    assert (bad.status, await bad.json()) == (
        400,
        {"error": "text must be 1 to 1000 characters"},
    )
    forbidden = await notes.get("/admin/notes", headers=_bearer(alice))
    assert (forbidden.status, (await forbidden.json())["code"]) == (403, "forbidden")
    public = await notes.get("/")
    assert await public.json() == {"app": "notes", "signUp": "/auth/signup"}


async def test_admin_route(notes: TestClient) -> None:
    alice = await _token(notes, "alice")
    await notes.post("/notes", json={"text": "one"}, headers=_bearer(alice))
    await notes.post("/notes", json={"text": "two"}, headers=_bearer(alice))
    admin = await make_admin_token(notes.app)
    overview = await notes.get("/admin/notes", headers=_bearer(admin))
    assert overview.status == 200
    assert list((await overview.json())["notesPerUser"].values()) == [2]


async def test_signed_out_tokens_are_refused(notes: TestClient) -> None:
    body = {"username": "carol", "email": "carol@example.com", "password": PASSWORD}
    await notes.post("/auth/signup", json=body)
    signin = {"username": "carol", "password": PASSWORD}
    tokens = await (await notes.post("/auth/signin", json=signin)).json()
    await notes.post("/auth/signout", json={"refreshToken": tokens["refreshToken"]})
    refused = await notes.get("/notes", headers=_bearer(tokens["accessToken"]))
    assert (refused.status, (await refused.json())["code"]) == (401, "token_revoked")
