"""Fair hashing (issue 16.3): one client cannot starve the others. Password checks in
flight are capped per login name and per address (beyond: 429 at once, no bcrypt), so
a storm of correct sign-ins on one account leaves the queue open to everyone else.
Order is asserted through HashGate (which job reached the pool, in which place), never
time."""

from __future__ import annotations

import asyncio

import pytest

from server import keys
from server.passwords import HashingBusy, PasswordHasher
from server.settings import PasswordSettings
from tests.conftest import PASSWORD, MakeApi
from tests.security.ratelimit_kit import (
    PROXY,
    HashGate,
    expect_limited,
    limits,
    signin,
    until,
)

# The caps live in the hasher, in memory: one backend shows them.
MEMORY_ONLY = pytest.mark.parametrize("backend", ["memory"])
STORM = 64
BOB_PASSWORD = "bob's own quite long passphrase"
FAIR = limits(max_hashes_per_account=2, max_hashes_per_address=4)


@MEMORY_ONLY
async def test_a_storm_on_one_account_does_not_starve_another_user(
    make_api: MakeApi,
) -> None:
    api = await make_api(server=PROXY, ratelimit=FAIR)
    await api.signup("alice")
    await api.signup("bob", password=BOB_PASSWORD)
    hasher = api.app[keys.AUTH].passwords
    gate = HashGate(hasher)
    storm = [
        asyncio.ensure_future(signin(api, "alice", address=f"198.51.100.{n}"))
        for n in range(1, STORM + 1)
    ]
    await gate.reached(2)
    await until(lambda: sum(s.done() for s in storm) == STORM - 2, "the refusals")
    assert gate.passwords == [PASSWORD, PASSWORD], "two of alice's reached bcrypt"
    for refused in [s for s in storm if s.done()]:
        assert await expect_limited(refused.result(), 1) == 1
    held = [s for s in storm if not s.done()]

    bob = asyncio.ensure_future(signin(api, "bob", BOB_PASSWORD, "203.0.113.9"))
    await gate.reached(3)
    assert gate.passwords[2] == BOB_PASSWORD, "bob is third in line, not 65th"
    gate.release(2)
    response = await bob
    assert response.status == 200
    assert not any(s.done() for s in held), "bob answered while alice's are held"

    gate.release_all()
    assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
    assert hasher.pending == 0
    assert hasher.in_flight("address:203.0.113.9") == 0
    assert (await signin(api, "alice", address="198.51.100.1")).status == 200


@MEMORY_ONLY
async def test_without_the_caps_the_storm_fills_the_queue(make_api: MakeApi) -> None:
    """What the caps prevent (issue 16.3 as found): with rate limits off only
    `max_pending_hashes` bounds the queue, and the storm takes all of it."""
    api = await make_api(server=PROXY, passwords={"max_pending_hashes": STORM})
    await api.signup("alice")
    await api.signup("bob", password=BOB_PASSWORD)
    gate = HashGate(api.app[keys.AUTH].passwords)
    storm = [
        asyncio.ensure_future(signin(api, "alice", address=f"198.51.100.{n}"))
        for n in range(1, STORM + 1)
    ]
    await gate.reached(STORM)
    await expect_limited(await signin(api, "bob", BOB_PASSWORD, "203.0.113.9"), 1)
    gate.release_all()
    assert {r.status for r in await asyncio.gather(*storm)} == {200}


@MEMORY_ONLY
async def test_one_address_has_a_few_checks_in_flight(make_api: MakeApi) -> None:
    api = await make_api(server=PROXY, ratelimit=FAIR)
    names = [f"user{n}" for n in range(10)]
    for name in names:
        await api.signup(name)
    gate = HashGate(api.app[keys.AUTH].passwords)
    spray = [
        asyncio.ensure_future(signin(api, name, address="198.51.100.1"))
        for name in names
    ]
    await gate.reached(4)
    await until(lambda: sum(s.done() for s in spray) == 6, "the refusals")
    assert len(gate.arrivals) == 4
    other = asyncio.ensure_future(signin(api, "user0", address="198.51.100.2"))
    await gate.reached(5)
    gate.release_all()
    assert (await other).status == 200
    statuses = sorted(r.status for r in await asyncio.gather(*spray))
    assert statuses == [200] * 4 + [429] * 6


@MEMORY_ONLY
async def test_the_caps_count_signup_hashing_per_address(make_api: MakeApi) -> None:
    api = await make_api(server=PROXY, ratelimit=limits(max_hashes_per_address=2))
    gate = HashGate(api.app[keys.AUTH].passwords)
    signups = [
        asyncio.ensure_future(
            api.client.post(
                "/api/auth/signup",
                json={
                    "username": f"user{n}",
                    "email": f"user{n}@example.com",
                    "password": PASSWORD,
                },
                headers={"X-Forwarded-For": "198.51.100.1"},
            )
        )
        for n in range(5)
    ]
    await gate.reached(2)
    await until(lambda: sum(s.done() for s in signups) == 3, "the refusals")
    gate.release_all()
    statuses = sorted(r.status for r in await asyncio.gather(*signups))
    assert statuses == [201] * 2 + [429] * 3


async def test_admission_caps_each_owner_and_gives_places_back() -> None:
    hasher = PasswordHasher(PasswordSettings(bcrypt_rounds=4, max_pending_hashes=3))
    try:
        caps = {"name:a": 1, "address:x": 2}
        first = hasher.admit(caps)
        with pytest.raises(HashingBusy):
            hasher.admit(caps)  # name:a is full
        second = hasher.admit({"name:b": 1, "address:x": 2})
        with pytest.raises(HashingBusy):
            hasher.admit({"name:c": 1, "address:x": 2})  # address:x is full
        third = hasher.admit()
        with pytest.raises(HashingBusy):
            hasher.admit()  # max_pending_hashes
        assert (hasher.pending, hasher.in_flight("address:x")) == (3, 2)
        with pytest.raises(RuntimeError), first:
            raise RuntimeError("a failed check still gives its place back")
        second.__exit__(None, None, None)
        second.__exit__(None, None, None)  # once only
        third.__exit__(None, None, None)
        assert (hasher.pending, hasher.in_flight("address:x")) == (0, 0)
        assert hasher._in_flight == {}
        with hasher.admit(caps):
            pass
    finally:
        hasher.close()
