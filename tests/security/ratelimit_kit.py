"""Helpers of the rate-limit tests: settings with every limit high unless given, sign-in
from a given address (through the trusted test proxy), the 429 check, a gate that holds
password checks at the door of the hashing pool, and a spy counting storage writes."""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientResponse

from server.passwords import PasswordHasher
from storage import Storage
from tests.conftest import PASSWORD, Api, expect_error

WRONG = "not the password at all"
INVALID = "Invalid username or password."
PROXY = {"trusted_proxies": ("127.0.0.1",)}
# Storage methods that change nothing; every other public coroutine method counts as a
# write (the storage branch adds some of these names; absent ones are ignored).
READS = frozenset(
    {
        "open",
        "close",
        "ping",
        "get_user",
        "find_user",
        "read_counter",
        "revocations_since",
        "watch_revocations",
        "list_sessions",
        "list_users",
    }
)
LIMITER_WRITES = frozenset({"hit_counter", "refund_counter", "delete_counter"})


def limits(**values: Any) -> dict[str, Any]:
    """Rate limits on, every limit and cap high unless given."""
    high = {
        "signin_ip_limit": 1000,
        "signin_pair_limit": 1000,
        "signin_account_limit": 1000,
        "signin_success_account_limit": 1000,
        "signin_success_ip_limit": 1000,
        "signup_ip_limit": 1000,
        "refresh_ip_limit": 1000,
        "signout_ip_limit": 1000,
        "max_hashes_per_account": 1000,
        "max_hashes_per_address": 1000,
    }
    return {"enabled": True, **high, **values}


async def signin(
    api: Api,
    username: str | None = None,
    password: str = PASSWORD,
    address: str | None = None,
    *,
    email: str | None = None,
    **headers: str,
) -> ClientResponse:
    """Sign in by username (or `email`), from `address` when the proxy is trusted."""
    if address is not None:
        headers["X-Forwarded-For"] = address
    login = {"email": email} if email is not None else {"username": username}
    body = {**login, "password": password}
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


async def until(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Wait for a state (not for a time): polls; the timeout only stops a hung test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.005)


class HashGate:
    """Holds every job sent to the hasher's pool (password checks and hashes) before it
    runs, in arrival order, until the test releases it: what reached bcrypt, and in
    which order, is then a list, not a timing."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self.arrivals: list[tuple[str, asyncio.Event]] = []
        self.opened = False  # after `release_all`, jobs pass straight through
        real = hasher._run

        async def gated(func: Callable[..., Any], *args: Any) -> Any:
            release = asyncio.Event()
            if self.opened:
                release.set()
            self.arrivals.append((str(args[0]), release))
            await release.wait()
            return await real(func, *args)

        hasher._run = gated  # type: ignore[method-assign]

    @property
    def passwords(self) -> list[str]:
        """The password of each job that arrived, in order."""
        return [password for password, _ in self.arrivals]

    def release(self, index: int) -> None:
        self.arrivals[index][1].set()

    def release_all(self) -> None:
        """Release every job held, and hold none from now on."""
        self.opened = True
        for _, release in self.arrivals:
            release.set()

    async def reached(self, count: int) -> None:
        await until(lambda: len(self.arrivals) >= count, f"{count} hashing jobs")


def spy_on_writes(storage: Storage) -> collections.Counter[str]:
    """Count every call of a storage method that may write (all public coroutine
    methods but READS), by name, from now on."""
    calls: collections.Counter[str] = collections.Counter()
    for name in dir(type(storage)):
        method = getattr(storage, name, None)
        if name.startswith("_") or name in READS or not callable(method):
            continue
        if not inspect.iscoroutinefunction(method):
            continue
        setattr(storage, name, _counted(calls, name, method))
    return calls


def _counted(
    calls: collections.Counter[str],
    name: str,
    method: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return await method(*args, **kwargs)

    return call


def limiter_writes(calls: collections.Counter[str]) -> int:
    return sum(calls[name] for name in LIMITER_WRITES)
