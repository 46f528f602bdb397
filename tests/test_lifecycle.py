"""What lives beyond one request: restarts, the purge task, and the event loop staying free
while bcrypt works."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server import clock, create_app, keys
from server.purge import purge_once
from tests.backends import BACKENDS, postgres_schema_dsn
from tests.conftest import Api, MakeApi, expect_error, make_settings

SQL_BACKENDS = [p for p in BACKENDS if p.values[0] != "memory"]


@pytest.mark.parametrize("backend", SQL_BACKENDS)
async def test_restart_keeps_users_sessions_and_revocations(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, backend: str
) -> None:
    import contextlib

    database = (
        postgres_schema_dsn() if backend == "postgres" else contextlib.nullcontext("")
    )
    async with database as dsn:
        settings = make_settings(tmp_path, backend, dsn, tokens={"secret": ""})
        first = Api(await aiohttp_client(create_app(settings)))
        kept = await first.user("alice")
        gone = await (await first.signin("alice")).json()
        assert (await first.signout(gone["refreshToken"])).status == 200
        await first.client.close()

        second = Api(await aiohttp_client(create_app(settings)))
        assert (await second.signin("alice")).status == 200
        assert (await second.get("/api/test/user", kept["accessToken"])).status == 200
        assert (await second.refresh(kept["refreshToken"])).status == 200
        await expect_error(
            await second.get("/api/test/user", gone["accessToken"]),
            401,
            "Unauthorized!",
            "token_revoked",
        )
        await expect_error(
            await second.refresh(gone["refreshToken"]), 403, None, "refresh_revoked"
        )


async def test_purge_task_deletes_expired_tokens(make_api: MakeApi) -> None:
    api = await make_api(tokens={"refresh_ttl": 1}, purge={"interval": 0.2})
    expired = (await api.user("alice"))["refreshToken"]
    clock.advance(2)  # past the TTL
    await asyncio.sleep(0.5)  # at least one purge pass
    await expect_error(
        await api.refresh(expired),
        403,
        "Refresh token is not in database!",
        "refresh_unknown",
    )


async def test_purge_once_works_in_batches_and_spares_live_sessions(
    make_api: MakeApi,
) -> None:
    api = await make_api(tokens={"refresh_ttl": 60})
    live = await api.user("alice")
    for _ in range(5):
        assert (await api.signin("alice")).status == 200
    storage = api.app[keys.AUTH].storage
    result = await purge_once(storage, batch_size=2, now=int(time.time()) + 3600)
    assert (result.sessions, result.tokens) == (6, 6)
    assert (await api.refresh(live["refreshToken"])).status == 403
    fresh = await (await api.signin("alice")).json()
    result = await purge_once(storage, batch_size=2)
    assert (result.sessions, result.tokens) == (0, 0)
    assert (await api.refresh(fresh["refreshToken"])).status == 200


@pytest.mark.parametrize("backend", ["memory"])
async def test_signin_does_not_block_the_event_loop(make_api: MakeApi) -> None:
    """A protected route answers while slow bcrypt work is still in flight: hashing runs
    in the pool, not on the loop. Ordering is asserted, not timing."""
    api = await make_api(passwords={"bcrypt_rounds": 12, "hash_workers": 1})
    token = (await api.user("alice"))["accessToken"]
    signins = [asyncio.ensure_future(api.signin("alice")) for _ in range(3)]
    hasher = api.app[keys.AUTH].passwords
    while hasher.pending < 3:  # all three are waiting on bcrypt now
        await asyncio.sleep(0.001)
    for _ in range(20):
        response = await api.get("/api/test/user", token)
        assert response.status == 200
    assert not any(task.done() for task in signins)
    assert [r.status for r in await asyncio.gather(*signins)] == [200, 200, 200]


def test_hashing_threads_run_below_the_event_loop_priority() -> None:
    """Linux sets niceness per thread: bcrypt yields the CPU to the loop in a storm."""
    import os
    import threading

    from server.passwords import HASH_THREAD_NICENESS, PasswordHasher
    from server.settings import PasswordSettings

    hasher = PasswordHasher(PasswordSettings(bcrypt_rounds=4))
    try:
        niceness = hasher._pool.submit(
            lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        ).result()
    finally:
        hasher.close()
    loop_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert niceness == min(19, loop_niceness + HASH_THREAD_NICENESS)
