"""Exact limits under concurrency (issue 10.2): an attempt is counted before its password
is hashed, so N concurrent attempts against a limit with k left let at most k reach
bcrypt. The attempts are held at the door of the hashing pool (HashGate), which is
where a read-check-then-count limiter would have let them all through."""

from __future__ import annotations

import asyncio

import bcrypt
import pytest

from server import clock, keys
from server.errors import ApiError
from server.ratelimit import USERNAME, RateLimiter, SigninAttempt, login_key
from server.settings import RateLimitSettings
from storage import Counter
from storage.memory import MemoryStorage
from tests.conftest import PASSWORD, MakeApi
from tests.security.ratelimit_kit import (
    WRONG,
    HashGate,
    expect_limited,
    limits,
    signin,
    until,
)

IN_FLIGHT = 40
LEFT = 5
WINDOWS = {
    "signin_pair_limit": 900,
    "signin_ip_limit": 900,
    "signin_account_limit": 3600,
}


def count_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    checks: list[bytes] = []
    real_checkpw = bcrypt.checkpw
    monkeypatch.setattr(
        bcrypt, "checkpw", lambda *a: checks.append(a[1]) or real_checkpw(*a)
    )
    return checks


@pytest.mark.parametrize("limit", sorted(WINDOWS))
async def test_concurrent_guesses_never_overshoot_a_failure_limit(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    api = await make_api(ratelimit=limits(**{limit: 3 + LEFT}))
    await api.signup("alice")
    for _ in range(3):
        assert (await signin(api, "alice", WRONG)).status == 401
    gate = HashGate(api.app[keys.AUTH].passwords)
    checks = count_checks(monkeypatch)
    guesses = [
        asyncio.ensure_future(signin(api, "alice", WRONG)) for _ in range(IN_FLIGHT)
    ]
    await gate.reached(LEFT)
    await until(
        lambda: sum(g.done() for g in guesses) == IN_FLIGHT - LEFT, "the refusals"
    )
    assert len(gate.arrivals) == LEFT and checks == []
    for refused in [g for g in guesses if g.done()]:
        await expect_limited(refused.result(), WINDOWS[limit])
    gate.release_all()
    answers = await asyncio.gather(*guesses)
    assert sorted(a.status for a in answers) == [401] * LEFT + [429] * (
        IN_FLIGHT - LEFT
    )
    assert len(checks) == LEFT, "exactly the attempts left reached bcrypt"
    await expect_limited(await signin(api, "alice"), WINDOWS[limit])
    assert len(checks) == LEFT


async def test_concurrent_signins_never_overshoot_the_success_limit(
    make_api: MakeApi,
) -> None:
    api = await make_api(ratelimit=limits(signin_success_account_limit=3 + 2))
    await api.signup("alice")
    for _ in range(2):
        assert (await signin(api, "alice")).status == 200
    gate = HashGate(api.app[keys.AUTH].passwords)
    attempts = [asyncio.ensure_future(signin(api, "alice")) for _ in range(10)]
    await gate.reached(3)
    await until(lambda: sum(a.done() for a in attempts) == 7, "the refusals")
    assert gate.passwords == [PASSWORD] * 3
    gate.release_all()
    answers = await asyncio.gather(*attempts)
    assert sorted(a.status for a in answers) == [200] * 3 + [429] * 7
    await expect_limited(await signin(api, "alice"), 900)


async def test_attempts_that_lose_the_race_leave_no_count_behind() -> None:
    """Six attempts all pass the read of a limit with two places left (held there
    together), then count: the four that count too late are refused and take their
    counts back, so the limit is spent by the two that went on, not by six."""
    storage = MemoryStorage(revocation_ttl=60)
    limiter = RateLimiter(
        RateLimitSettings(**limits(signin_pair_limit=2, signin_ip_limit=100)), storage
    )
    together = asyncio.Barrier(6)
    real_read = storage.read_counter

    async def read_counter(key: str, now: int) -> Counter:
        counter = await real_read(key, now)
        if key.startswith("signin-pair:"):
            await together.wait()
        return counter

    storage.read_counter = read_counter  # type: ignore[method-assign]
    name = login_key(USERNAME, "alice")
    outcomes = await asyncio.gather(
        *(limiter.begin_signin(name, None, "192.0.2.1") for _ in range(6)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, ApiError)]
    assert len(refused) == 4 and {e.status for e in refused} == {429}
    for attempt in outcomes:
        if isinstance(attempt, SigninAttempt):
            await attempt.failed()
    now = clock.epoch()
    assert (await real_read(f"signin-pair:{name}:192.0.2.1", now)).count == 2
    assert (await real_read("signin-ip:192.0.2.1", now)).count == 2
