"""Junk costs no writes (issue 10.1): refresh, sign-out and sign-up are limited per
address in the process's memory up to `ratelimit.process_share` of the limit, and only
beyond it in storage as well; an address found over its limit is refused from memory.
Storage writes are counted by a spy around every storage method that may write."""

from __future__ import annotations

import secrets

import pytest

from server import keys
from server.errors import ApiError
from server.ratelimit import AddressLimit, LocalWindows, Window
from storage.memory import MemoryStorage
from tests.backends import BACKENDS
from tests.conftest import MakeApi, expect_error
from tests.security.conftest import Clock
from tests.security.ratelimit_kit import (
    PROXY,
    WRONG,
    expect_limited,
    limiter_writes,
    limits,
    signin,
    spy_on_writes,
)

SHARED_BACKENDS = [p for p in BACKENDS if p.values[0] != "memory"]


def junk() -> str:
    return secrets.token_urlsafe(32)


async def test_junk_refreshes_and_signouts_make_no_limiter_write(
    make_api: MakeApi,
) -> None:
    """With the default limits: nothing but the storage's own token lookups (which
    answer unknown tokens from a read; see the next test)."""
    api = await make_api(ratelimit={"enabled": True})
    calls = spy_on_writes(api.app[keys.AUTH].storage)
    for _ in range(50):
        await expect_error(await api.refresh(junk()), 403, None, "refresh_unknown")
        assert (await api.signout(junk())).status == 200
    assert limiter_writes(calls) == 0
    assert dict(calls) == {"use_refresh_token": 50, "revoke_session": 50}


async def test_junk_refreshes_and_signouts_take_no_write_transaction(
    make_api: MakeApi,
) -> None:
    api = await make_api(ratelimit={"enabled": True})
    storage = api.app[keys.AUTH].storage
    before = storage.write_transactions  # type: ignore[attr-defined]
    for _ in range(50):
        await expect_error(await api.refresh(junk()), 403, None, "refresh_unknown")
        assert (await api.signout(junk())).status == 200
    assert storage.write_transactions == before  # type: ignore[attr-defined]


async def test_a_flood_writes_only_between_the_share_and_the_limit(
    make_api: MakeApi, clock: Clock
) -> None:
    """Limit 10, share 0.5: five requests counted in memory only, five in storage too,
    one more stored to learn the limit is spent; the rest refused from memory."""
    api = await make_api(ratelimit=limits(refresh_ip_limit=10, signout_ip_limit=10))
    calls = spy_on_writes(api.app[keys.AUTH].storage)
    statuses = [(await api.refresh(junk())).status for _ in range(30)]
    assert statuses == [403] * 10 + [429] * 20
    assert calls["hit_counter"] == 6
    statuses = [(await api.signout(junk())).status for _ in range(30)]
    assert statuses == [200] * 10 + [429] * 20
    assert limiter_writes(calls) == 12
    clock.advance(61)  # both windows end
    assert (await api.refresh(junk())).status == 403
    assert (await api.signout(junk())).status == 200
    assert limiter_writes(calls) == 12


async def test_signups_from_one_address_are_counted_in_memory_first(
    make_api: MakeApi,
) -> None:
    api = await make_api(ratelimit=limits(signup_ip_limit=4))
    calls = spy_on_writes(api.app[keys.AUTH].storage)
    statuses = [(await api.signup(f"user{n}")).status for n in range(6)]
    assert statuses == [201] * 4 + [429] * 2
    assert calls["hit_counter"] == 3  # the 3rd and 4th, and the 5th found over


async def test_a_share_of_zero_counts_every_request_in_storage(
    make_api: MakeApi,
) -> None:
    api = await make_api(ratelimit=limits(refresh_ip_limit=3, process_share=0))
    calls = spy_on_writes(api.app[keys.AUTH].storage)
    statuses = [(await api.refresh(junk())).status for _ in range(6)]
    assert statuses == [403] * 3 + [429] * 3
    assert calls["hit_counter"] == 4


async def test_refused_signins_take_no_write(make_api: MakeApi) -> None:
    """An attempt over a sign-in limit is refused after a read, without counting."""
    api = await make_api(ratelimit=limits(signin_ip_limit=2))
    await api.signup("alice")
    for _ in range(2):
        assert (await signin(api, "alice", WRONG)).status == 401
    calls = spy_on_writes(api.app[keys.AUTH].storage)
    for _ in range(20):
        await expect_limited(await signin(api, "alice", WRONG), 900)
    assert dict(calls) == {}


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
async def test_limits_hold_across_instances(make_api: MakeApi) -> None:
    """Two instances on one database. Sign-in failures (which protect accounts) are
    counted in storage only: exact across instances. A per-address limit of 10 with
    share 0.5 lets an address make at most 10 * (1 + 0.5) requests through two."""
    settings = {
        "server": PROXY,
        "ratelimit": limits(signin_pair_limit=3, refresh_ip_limit=10),
    }
    one, two = await make_api(**settings), await make_api(**settings)
    await one.signup("alice")
    for api in (one, two, one):
        assert (await signin(api, "alice", WRONG, "198.51.100.1")).status == 401
    for api in (one, two):
        await expect_limited(await signin(api, "alice", address="198.51.100.1"), 900)
    through_one = [(await one.refresh(junk())).status for _ in range(12)]
    through_two = [(await two.refresh(junk())).status for _ in range(12)]
    assert through_one == [403] * 10 + [429] * 2
    assert through_two == [403] * 5 + [429] * 7


async def test_local_windows_end_and_are_forgotten(clock: Clock) -> None:
    windows = LocalWindows(window=60)
    now = clock.epoch()
    assert _count(windows.hit("a", now)) == 1
    assert _count(windows.hit("a", now)) == 2
    windows.hit("b", now + 30)
    assert len(windows) == 2
    assert _count(windows.hit("a", now + 60)) == 1  # a's window ended; b's is on
    assert len(windows) == 2
    windows.hit("c", now + 200)
    assert len(windows) == 1  # a and b are forgotten


def _count(window: Window | None) -> int:
    assert window is not None
    return window.count


async def test_an_address_limit_with_a_full_table_counts_in_storage(
    clock: Clock,
) -> None:
    """No room in memory for a new address: it is counted in storage, whole limit,
    so filling the table with other addresses cannot lift anyone's limit."""
    storage = MemoryStorage(revocation_ttl=60)
    limit = AddressLimit("refresh:", 3, 60, 1.0, storage, max_keys=2)
    now = clock.epoch()
    for address in ("192.0.2.1", "192.0.2.2"):
        await limit.hit(address, now)
    for _ in range(3):
        await limit.hit("192.0.2.3", now)
    with pytest.raises(ApiError) as refused:
        await limit.hit("192.0.2.3", now)
    assert (refused.value.status, refused.value.headers) == (429, {"Retry-After": "60"})
    assert (await storage.read_counter("refresh:192.0.2.3", now)).count == 4
    assert (await storage.read_counter("refresh:192.0.2.1", now)).count == 0
