"""Rate limits against guessing and flooding: per login name and address, per address,
per login name from unknown addresses (the owner's known address stays open),
successful sign-ins per login name and per address, sign-up, refresh and sign-out;
X-Forwarded-For believed only from trusted proxies. Every backend runs these.

The concurrency, fairness, key and write-cost tests are in test_limits_*.py."""

from __future__ import annotations

import json
import logging

import bcrypt
import pytest

from tests.conftest import PASSWORD, MakeApi, expect_error
from tests.security.conftest import Clock
from tests.security.ratelimit_kit import (
    PROXY,
    WRONG,
    expect_invalid_credentials,
    expect_limited,
    limits,
    signin,
)

OWNER_ADDRESS = "203.0.113.7"


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


async def test_a_known_address_is_renewed_by_signing_in(
    make_api: MakeApi, clock: Clock
) -> None:
    """Trusted for `known_address_ttl` (30 days) after a sign-in from it, renewed by a
    sign-in once half of that has passed."""
    api = await make_api(server=PROXY, ratelimit=limits(signin_account_limit=1))
    await api.signup("alice")
    day = 86400
    assert (await signin(api, "alice", address=OWNER_ADDRESS)).status == 200
    clock.advance(20 * day)
    assert (await signin(api, "alice", address=OWNER_ADDRESS)).status == 200
    clock.advance(20 * day)  # 40 days after the first sign-in, 20 after the second
    await expect_invalid_credentials(await signin(api, "alice", WRONG, "198.51.100.1"))
    await expect_limited(await signin(api, "alice", address="198.51.100.2"), 3600)
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


async def test_signout_is_limited_per_address(make_api: MakeApi) -> None:
    api = await make_api(server=PROXY, ratelimit=limits(signout_ip_limit=3))
    for n in range(3):
        assert (await api.signout(f"never-issued-{n}")).status == 200
    await expect_limited(await api.signout("never-issued"), 60)
    other = await api.client.post(
        "/api/auth/signout",
        json={"refreshToken": "never-issued"},
        headers={"X-Forwarded-For": "192.0.2.50"},
    )
    assert other.status == 200


async def test_successful_signins_are_limited_per_login_name(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sign-in costs a hash: one client with the password cannot loop forever. A
    login name counts alone (see test_limits_keys.py for why)."""
    api = await make_api(ratelimit=limits(signin_success_account_limit=3))
    await api.signup("alice")
    for _ in range(3):
        assert (await signin(api, "alice")).status == 200
    checks: list[bytes] = []
    real_checkpw = bcrypt.checkpw
    monkeypatch.setattr(
        bcrypt, "checkpw", lambda *a: checks.append(a[1]) or real_checkpw(*a)
    )
    await expect_limited(await signin(api, "alice"), 900)
    await expect_limited(await signin(api, "Alice", WRONG), 900)
    assert checks == [], "a limited sign-in must not spend bcrypt"
    assert (await signin(api, email="alice@example.com")).status == 200


async def test_successful_signins_are_limited_per_address(make_api: MakeApi) -> None:
    api = await make_api(server=PROXY, ratelimit=limits(signin_success_ip_limit=3))
    for name in ("alice", "bob", "carol", "dave"):
        await api.signup(name)
    for name in ("alice", "bob", "carol"):
        assert (await signin(api, name, address="198.51.100.1")).status == 200
    await expect_limited(await signin(api, "dave", address="198.51.100.1"), 900)
    assert (await signin(api, "dave", address="198.51.100.2")).status == 200


async def test_successes_are_not_counted_as_failures(make_api: MakeApi) -> None:
    """Counted before the hash, a success is taken back from the failure limits."""
    api = await make_api(
        server=PROXY, ratelimit=limits(signin_ip_limit=3, signin_account_limit=3)
    )
    for name in ("alice", "bob", "carol"):
        await api.signup(name)
    for _ in range(2):
        for name in ("alice", "bob", "carol"):
            assert (await signin(api, name, address="198.51.100.1")).status == 200
    for name in ("alice", "bob", "carol"):
        await expect_invalid_credentials(await signin(api, name, WRONG, "198.51.100.1"))
    await expect_limited(await signin(api, "alice", address="198.51.100.1"), 900)


async def test_failures_are_not_counted_as_successes(make_api: MakeApi) -> None:
    """...and a failure from the success limits."""
    api = await make_api(
        server=PROXY,
        ratelimit=limits(signin_success_account_limit=2, signin_success_ip_limit=2),
    )
    await api.signup("alice")
    for _ in range(5):
        await expect_invalid_credentials(
            await signin(api, "alice", WRONG, "198.51.100.1")
        )
    for _ in range(2):
        assert (await signin(api, "alice", address="198.51.100.1")).status == 200
    await expect_limited(await signin(api, "alice", address="198.51.100.1"), 900)


async def test_limits_answer_429_with_retry_after_and_log_one_event(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Every refusal is the contract's 429; the security log gets one `rate_limited`
    line per key and window, the rest are summarised (server/events.py)."""
    caplog.set_level(logging.INFO, logger="auth.security")
    api = await make_api(server=PROXY, ratelimit=limits(refresh_ip_limit=1))
    assert (await api.refresh("never-issued")).status == 403
    for _ in range(5):
        await expect_limited(await api.refresh("never-issued"), 60)
    events = [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "auth.security"
    ]
    limited = [event for event in events if event["event"] == "rate_limited"]
    assert len(limited) == 1
    assert (limited[0]["ip"], limited[0]["route"]) == (
        "127.0.0.1",
        "/api/auth/refreshtoken",
    )
