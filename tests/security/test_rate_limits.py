"""Rate limits against guessing and flooding: per account and address, per address, per
account from unknown addresses (the owner's known address stays open), sign-up and
refresh; X-Forwarded-For believed only from trusted proxies. Counters live in storage,
so every backend runs these."""

from __future__ import annotations

from typing import Any

import bcrypt
import pytest
from aiohttp import ClientResponse

from tests.conftest import PASSWORD, Api, MakeApi, expect_error

WRONG = "not the password at all"
INVALID = "Invalid username or password."
PROXY = {"trusted_proxies": ("127.0.0.1",)}
OWNER_ADDRESS = "203.0.113.7"


def limits(**values: int) -> dict[str, Any]:
    """Rate limits on, every limit high unless given."""
    high = {
        "signin_ip_limit": 1000,
        "signin_pair_limit": 1000,
        "signin_account_limit": 1000,
        "signup_ip_limit": 1000,
        "refresh_ip_limit": 1000,
    }
    return {"enabled": True, **high, **values}


async def signin(
    api: Api,
    username: str,
    password: str = PASSWORD,
    address: str | None = None,
    **headers: str,
) -> ClientResponse:
    if address is not None:
        headers["X-Forwarded-For"] = address
    body = {"username": username, "password": password}
    return await api.client.post("/api/auth/signin", json=body, headers=headers)


async def expect_limited(response: ClientResponse, window: int) -> int:
    """429 in the contract's shape with an integer Retry-After within the window."""
    body = await expect_error(response, 429, None, "rate_limited")
    assert isinstance(body["message"], str) and body["message"]
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= window
    return int(retry_after)


async def expect_invalid_credentials(response: ClientResponse) -> None:
    await expect_error(response, 401, INVALID, "invalid_credentials")


async def test_failures_per_account_and_address(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = await make_api(ratelimit=limits(signin_pair_limit=3))
    await api.signup("alice")
    await api.signup("bob")
    for _ in range(3):
        await expect_invalid_credentials(await signin(api, "alice", WRONG))
    checks: list[bytes] = []
    real_checkpw = bcrypt.checkpw
    monkeypatch.setattr(
        bcrypt, "checkpw", lambda *a: checks.append(a[1]) or real_checkpw(*a)
    )
    await expect_limited(await signin(api, "alice"), 900)
    await expect_limited(await signin(api, "ALICE", WRONG), 900)
    assert checks == [], "a limited sign-in must not spend bcrypt"
    assert (await signin(api, "bob")).status == 200


async def test_a_success_forgets_the_typos(make_api: MakeApi) -> None:
    api = await make_api(ratelimit=limits(signin_pair_limit=3))
    await api.signup("alice")
    for _ in range(2):
        await expect_invalid_credentials(await signin(api, "alice", WRONG))
    assert (await signin(api, "alice")).status == 200
    for _ in range(3):
        await expect_invalid_credentials(await signin(api, "alice", WRONG))
    await expect_limited(await signin(api, "alice"), 900)


async def test_failures_per_address(make_api: MakeApi) -> None:
    """Password spraying: one address, many accounts (known or not)."""
    api = await make_api(server=PROXY, ratelimit=limits(signin_ip_limit=3))
    for name in ("alice", "bob", "dave"):
        await api.signup(name)
    for name in ("alice", "bob", "nobody"):
        await expect_invalid_credentials(await signin(api, name, WRONG, "198.51.100.1"))
    await expect_limited(await signin(api, "dave", address="198.51.100.1"), 900)
    assert (await signin(api, "dave", address="198.51.100.2")).status == 200


async def test_an_attacker_elsewhere_cannot_lock_the_owner_out(
    make_api: MakeApi,
) -> None:
    api = await make_api(server=PROXY, ratelimit=limits(signin_account_limit=3))
    await api.signup("alice")
    assert (await signin(api, "alice", address=OWNER_ADDRESS)).status == 200
    for n in range(1, 4):
        await expect_invalid_credentials(
            await signin(api, "alice", WRONG, f"198.51.100.{n}")
        )
    # Distributed guessing is stopped, even with the right password...
    await expect_limited(await signin(api, "alice", address="198.51.100.9"), 3600)
    await expect_limited(await signin(api, "alice", address="203.0.113.99"), 3600)
    # ...but the owner's known address still signs in, again and again.
    for _ in range(2):
        assert (await signin(api, "alice", address=OWNER_ADDRESS)).status == 200


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    make_api: MakeApi,
) -> None:
    api = await make_api(ratelimit=limits(signin_pair_limit=3))
    await api.signup("alice")
    for n in range(3):
        await expect_invalid_credentials(
            await signin(api, "alice", WRONG, f"198.51.100.{n}")
        )
    for headers in (
        {"X-Forwarded-For": "198.51.100.77"},
        {"X-Real-IP": "198.51.100.78"},
        {"Forwarded": "for=198.51.100.79"},
        {},
    ):
        await expect_limited(await signin(api, "alice", **headers), 900)


async def test_forwarded_for_from_a_trusted_proxy_is_believed(
    make_api: MakeApi,
) -> None:
    api = await make_api(server=PROXY, ratelimit=limits(signin_pair_limit=3))
    await api.signup("alice")
    for _ in range(3):
        await expect_invalid_credentials(
            await signin(api, "alice", WRONG, "198.51.100.1")
        )
    await expect_limited(await signin(api, "alice", address="198.51.100.1"), 900)
    # The client spoofs a first hop; the proxy appended the real one: still limited.
    await expect_limited(
        await signin(api, "alice", address="192.0.2.1, 198.51.100.1"), 900
    )
    # A trusted hop at the right is skipped.
    await expect_limited(
        await signin(api, "alice", address="198.51.100.1, 127.0.0.1"), 900
    )
    # Another client behind the proxy has its own count.
    await expect_invalid_credentials(await signin(api, "alice", WRONG, "198.51.100.2"))
    # Garbage falls back to the proxy's own address, which has no failures yet.
    assert (await signin(api, "alice", address="not-an-address")).status == 200


async def test_signup_is_limited_per_address(make_api: MakeApi) -> None:
    api = await make_api(server=PROXY, ratelimit=limits(signup_ip_limit=2))
    for name in ("alice", "bob"):
        assert (await api.signup(name)).status == 201
    await expect_limited(await api.signup("carol"), 3600)
    await expect_invalid_credentials(await signin(api, "carol", address="192.0.2.50"))
    other = await api.client.post(
        "/api/auth/signup",
        json={"username": "carol", "email": "carol@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "192.0.2.50"},
    )
    assert other.status == 201


async def test_refresh_is_limited_per_address(make_api: MakeApi) -> None:
    api = await make_api(ratelimit=limits(refresh_ip_limit=2))
    await api.signup("alice")
    token = (await (await signin(api, "alice")).json())["refreshToken"]
    for _ in range(2):
        response = await api.refresh(token)
        assert response.status == 200
        token = (await response.json())["refreshToken"]
    await expect_limited(await api.refresh(token), 60)
    await expect_limited(await api.refresh("never-issued"), 60)


async def test_disabled_turns_every_limit_off(make_api: MakeApi) -> None:
    one = {name: 1 for name in limits() if name != "enabled"}
    api = await make_api(ratelimit={**one, "enabled": False})
    for name in ("alice", "bob", "carol"):
        assert (await api.signup(name)).status == 201
    for _ in range(4):
        await expect_invalid_credentials(await signin(api, "alice", WRONG))
    token = (await (await signin(api, "alice")).json())["refreshToken"]
    for _ in range(3):
        response = await api.refresh(token)
        assert response.status == 200
        token = (await response.json())["refreshToken"]


async def test_current_password_guesses_are_limited(make_api: MakeApi) -> None:
    api = await make_api(ratelimit=limits(signin_pair_limit=3, signin_ip_limit=3))
    await api.signup("alice")
    access = (await (await signin(api, "alice")).json())["accessToken"]
    body = {"currentPassword": WRONG, "newPassword": "a brand new passphrase"}
    headers = {"x-access-token": access}
    for _ in range(3):
        response = await api.client.post(
            "/api/auth/password", json=body, headers=headers
        )
        await expect_error(
            response, 400, "Current password is incorrect.", "invalid_credentials"
        )
    response = await api.client.post("/api/auth/password", json=body, headers=headers)
    await expect_limited(response, 900)
