"""Sign-ins racing a password change or a deletion (the session is created only if what
was verified still holds), and one account per identity whatever its spelling.

The races are made deterministic: the sign-in is held after its password check, just
before its session is written, while the other request completes."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Awaitable, Callable
from typing import Any

from server import clock, keys
from storage import NewSession
from tests.conftest import PASSWORD, Api, MakeApi, expect_error, make_admin_token

NEW_PASSWORD = "a brand new passphrase for alice"


class HeldSessions:
    """Holds every `create_session` until released, so a test can act in between."""

    def __init__(self, api: Api) -> None:
        storage = api.app[keys.AUTH].storage
        self._create = storage.create_session
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        storage.create_session = self._held  # type: ignore[method-assign]

    async def _held(self, session: NewSession, password_hash: str) -> bool:
        self.reached.set()
        await self.release.wait()
        return await self._create(session, password_hash)


async def _raced(
    api: Api, username: str, meanwhile: Callable[[], Awaitable[Any]]
) -> Any:
    """Sign in as `username`, run `meanwhile` between the password check and the
    session's write, then let the sign-in finish; its response."""
    held = HeldSessions(api)
    signin = asyncio.ensure_future(api.signin(username))
    await asyncio.wait_for(held.reached.wait(), 10)
    await meanwhile()
    held.release.set()
    return await signin


async def test_a_signin_with_the_old_password_does_not_survive_a_change(
    api: Api,
) -> None:
    first = await api.user("alice")

    async def change() -> None:
        response = await api.client.post(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD},
            headers={"x-access-token": first["accessToken"]},
        )
        assert response.status == 200

    raced = await _raced(api, "alice", change)
    await expect_error(
        raced, 401, "Invalid username or password.", "invalid_credentials"
    )
    sessions = await api.app[keys.AUTH].storage.list_sessions(
        first["id"], clock.epoch()
    )
    assert [s.id for s in sessions] == [_sid(api, first["accessToken"])]
    assert (await api.signin("alice", NEW_PASSWORD)).status == 200


async def test_a_signin_racing_a_deletion_gets_no_tokens(api: Api) -> None:
    alice = await api.user("alice")
    admin = await make_admin_token(api.app)

    async def delete() -> None:
        response = await api.client.delete(
            f"/api/users/{alice['id']}", headers={"x-access-token": admin}
        )
        assert response.status == 200

    raced = await _raced(api, "alice", delete)
    await expect_error(
        raced, 401, "Invalid username or password.", "invalid_credentials"
    )
    assert (
        await api.app[keys.AUTH].storage.list_sessions(alice["id"], clock.epoch()) == []
    )


def _sid(api: Api, token: str) -> str:
    return api.app[keys.AUTH].access_tokens.verify(token).session_id


async def test_equivalent_email_spellings_are_one_account(make_api: MakeApi) -> None:
    api = await make_api()
    fullwidth_e = "\uff45"
    spellings = [
        ("kevin@example.com", f"kevin@{fullwidth_e}xample.com"),
        ("user@bücher.example", "user@xn--bcher-kva.example"),
        ("user2@bücher.example", unicodedata.normalize("NFD", "user2@bücher.example")),
        ("café@example.com", unicodedata.normalize("NFD", "café@example.com")),
        ("Mixed@Example.COM", "mixed@example.com"),
    ]
    for n, (first, second) in enumerate(spellings):
        created = await api.signup(f"first{n}", email=first)
        assert created.status == 201, await created.text()
        again = await api.signup(f"second{n}", email=second)
        await expect_error(
            again, 409, "Failed! Email is already in use!", "email_taken"
        )
        by_email = await api.client.post(
            "/api/auth/signin", json={"email": second, "password": PASSWORD}
        )
        assert (await by_email.json())["username"] == f"first{n}"


async def test_a_look_alike_username_finds_nobody(api: Api) -> None:
    await api.user("admin")
    for look_alike in ("\uff41dmin", "ADMIN\u200b", "adm\u0131n"):
        response = await api.signin(look_alike)
        await expect_error(
            response, 401, "Invalid username or password.", "invalid_credentials"
        )
    assert (await api.signin("ADMIN")).status == 200  # case alone is the same name


async def test_a_decomposed_password_is_the_same_password(api: Api) -> None:
    composed = "Crème brûlée et café au lait"
    await api.signup("chef", password=composed)
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert (await api.signin("chef", decomposed)).status == 200
