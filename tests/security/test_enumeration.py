"""Account enumeration through sign-in: an unknown account and a wrong password give the
same status, body and headers, and do the same work (one bcrypt check at the same cost).
Work is counted, not timed: timed assertions are flaky."""

from __future__ import annotations

from typing import Any

import bcrypt
import pytest
from aiohttp import ClientResponse

from server import keys
from tests.conftest import Api, MakeApi, expect_error

memory_only = pytest.mark.parametrize("backend", ["memory"])
WRONG = "not the password at all"
INVALID = "Invalid username or password."
LOGINS = {
    "username": ("alice", "nobody"),
    "email": ("alice@example.com", "nobody@example.com"),
}


class CheckpwSpy:
    """Records every bcrypt check (the hash it ran against) and runs the real one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashes: list[bytes] = []
        self._real = bcrypt.checkpw
        monkeypatch.setattr(bcrypt, "checkpw", self)

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.hashes.append(hashed)
        return self._real(password, hashed)

    def take(self) -> list[bytes]:
        taken, self.hashes = self.hashes, []
        return taken


async def signin(
    api: Api, field: str, login: str, password: str = WRONG
) -> ClientResponse:
    return await api.client.post(
        "/api/auth/signin", json={field: login, "password": password}
    )


def comparable_headers(response: ClientResponse) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "Date"}


@memory_only
@pytest.mark.parametrize("field", ["username", "email"])
async def test_unknown_account_and_wrong_password_look_the_same(
    api: Api, field: str
) -> None:
    await api.signup("alice")
    known, unknown = LOGINS[field]
    wrong = await signin(api, field, known)
    missing = await signin(api, field, unknown)
    for response in (wrong, missing):
        await expect_error(response, 401, INVALID, "invalid_credentials")
    assert await wrong.read() == await missing.read()
    assert comparable_headers(wrong) == comparable_headers(missing)


@memory_only
@pytest.mark.parametrize("field", ["username", "email"])
async def test_both_paths_run_one_bcrypt_check_at_the_same_cost(
    api: Api, field: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.signup("alice")
    stored = (
        await api.app[keys.AUTH].storage.find_user(username="alice")
    ).password_hash.encode()
    spy = CheckpwSpy(monkeypatch)
    known, unknown = LOGINS[field]

    await expect_error(
        await signin(api, field, known), 401, INVALID, "invalid_credentials"
    )
    assert spy.take() == [stored]
    await expect_error(
        await signin(api, field, unknown), 401, INVALID, "invalid_credentials"
    )
    (dummy,) = spy.take()
    assert dummy != stored
    rounds = api.app[keys.AUTH].settings.passwords.bcrypt_rounds
    assert dummy[:7] == stored[:7] == f"$2b${rounds:02d}$".encode()


@memory_only
async def test_limited_sign_ins_look_the_same_for_unknown_accounts(
    make_api: MakeApi,
) -> None:
    """A locked account must not tell that it exists: unknown ones lock alike."""
    ratelimit: dict[str, Any] = {"enabled": True, "signin_pair_limit": 2}
    api = await make_api(ratelimit=ratelimit)
    await api.signup("alice")
    answers = []
    for login in ("alice", "nobody"):
        for _ in range(2):
            response = await signin(api, "username", login)
            await expect_error(response, 401, INVALID, "invalid_credentials")
        limited = await signin(api, "username", login)
        await expect_error(limited, 429, None, "rate_limited")
        answers.append(limited)
    known, unknown = (comparable_headers(response) for response in answers)
    assert set(known) == set(unknown)
    assert abs(int(known.pop("Retry-After")) - int(unknown.pop("Retry-After"))) <= 1
    (
        known.pop("Content-Length"),
        unknown.pop("Content-Length"),
    )  # the seconds in the message
    assert known == unknown


@memory_only
async def test_signup_probes_for_taken_names_are_limited(make_api: MakeApi) -> None:
    """The contract's 409s tell which usernames and emails exist; the sign-up limit
    must bound how fast one address can ask."""
    api = await make_api(ratelimit={"enabled": True, "signup_ip_limit": 2})
    assert (await api.signup("alice")).status == 201
    probes = [
        await api.signup("alice", email=f"probe{n}@example.com") for n in range(3)
    ]
    await expect_error(
        probes[0], 409, "Failed! Username is already in use!", "username_taken"
    )
    await expect_error(probes[-1], 429, None, "rate_limited")
