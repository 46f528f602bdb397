"""Phase 9: how long a sign-out on one instance takes to reach another. Two servers share
one database (and one data folder, so one signing key). Each sample:

1. sign in on instance A; instance B accepts the access token (200, so B has verified it,
   and may have cached it, before the sign-out: the realistic case);
2. wait a random part of B's revocation poll interval, so that samples do not all start
   at the same point of B's polling cycle (they would, since each ends just after a poll);
3. send the sign-out to A and, from that instant, ask B every `revocation_probe_ms` for
   the protected route with the access token, until B answers 401 `token_revoked`.

The sample is the time from sending the sign-out to receiving B's first `token_revoked`,
so it includes the sign-out itself and is exact to within one probe interval. A sample not
revoked within `revocation_timeout` is a miss, counted and reported apart (the p99 is
then at least the timeout). The target (p99 <= 100 ms) is PostgreSQL's, where a push can
exist; on SQLite instances learn of revocations only by polling (informational).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time

import aiohttp

from server.settings import load_settings

from . import client, procs, seed, servers, specs
from .report import Figure
from .runner import Bench
from .servers import Server

REVOKED_CODE = "token_revoked"
TARGET_P99_MS = 100.0


def across_instances(bench: Bench, backend: str) -> None:
    config = bench.config
    with contextlib.ExitStack() as stack:
        dsn = ""
        if backend == "postgres":
            dsn = stack.enter_context(seed.postgres_schema(config.postgres_dsn))
        env = specs.env_for(bench, f"revocation-{backend}.db", dsn=dsn)
        if config.revocation_poll is not None:
            env["AUTH_TOKENS_REVOCATION_POLL"] = str(config.revocation_poll)
        poll = load_settings(environ=env).tokens.revocation_poll
        # The schema and the bench user first, so that the instances start together.
        store = seed.Store(backend, dsn or env["AUTH_STORAGE_PATH"])
        asyncio.run(seed.create_user(store))
        env_b = {**env, "AUTH_SERVER_PORT": str(procs.free_port())}
        named = [(f"revocation-{backend}-a", env), (f"revocation-{backend}-b", env_b)]
        a, b = stack.enter_context(servers.auth_servers(named, bench.workdir))
        samples, misses = asyncio.run(_sample(bench, a, b, poll))
    _figure(bench, backend, poll, samples, misses)


async def _sample(
    bench: Bench, a: Server, b: Server, poll: float
) -> tuple[list[float], int]:
    """The seconds of every revoked sample, and how many were not revoked in time."""
    config = bench.config
    samples: list[float] = []
    misses = 0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for _ in range(config.revocation_samples):
            answer = await _post(http, a, specs.SIGNIN_PATH, client.signin_body())
            access, refresh = answer["accessToken"], answer["refreshToken"]
            status, code = await _probe(http, b, access)
            if status != 200:
                raise RuntimeError(f"instance B refused a fresh token: {status} {code}")
            await asyncio.sleep(random.uniform(0, poll))
            took = await _one(bench, http, a, b, access, refresh)
            if took is None:
                misses += 1
            else:
                samples.append(took)
    return samples, misses


async def _one(
    bench: Bench,
    http: aiohttp.ClientSession,
    a: Server,
    b: Server,
    access: str,
    refresh: str,
) -> float | None:
    """Seconds from sending the sign-out to A until B answers token_revoked; None if
    that did not happen within the timeout."""
    every = bench.config.revocation_probe_ms / 1000
    began = time.perf_counter()
    deadline = began + bench.config.revocation_timeout
    signout = asyncio.create_task(
        _post(http, a, specs.SIGNOUT_PATH, {"refreshToken": refresh})
    )
    try:
        probes = 0
        while True:
            status, code = await _probe(http, b, access)
            now = time.perf_counter()
            if status == 401 and code == REVOKED_CODE:
                return now - began
            if status != 200:
                raise RuntimeError(f"instance B answered {status} {code}")
            if now >= deadline:
                return None
            probes += 1
            await asyncio.sleep(max(0.0, began + probes * every - now))
    finally:
        await signout


async def _post(
    http: aiohttp.ClientSession, server: Server, path: str, body: dict
) -> dict:
    async with http.post(server.url + path, json=body) as response:
        answer = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}: {answer}")
        return answer


async def _probe(
    http: aiohttp.ClientSession, server: Server, access: str
) -> tuple[int, str | None]:
    headers = {"x-access-token": access}
    async with http.get(server.url + specs.USER_PATH, headers=headers) as response:
        if response.status == 200:
            await response.read()
            return 200, None
        answer = await response.json()
        return response.status, answer.get("code")


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile (the p99 of 50 samples is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]


def _figure(
    bench: Bench, backend: str, poll: float, samples: list[float], misses: int
) -> None:
    count = len(samples) + misses
    timeout_ms = bench.config.revocation_timeout * 1000
    # A miss took longer than the timeout: it counts at the timeout, a lower bound.
    values = [s * 1000 for s in samples] + [timeout_ms] * misses
    p50, p99 = percentile(values, 50), percentile(values, 99)
    value = f"p50 {p50:.0f} / p99 {p99:.0f} / max {max(values):.0f} ms, {count} samples"
    if misses:
        value += f", {misses} not revoked within {timeout_ms:.0f} ms"
    # The target is PostgreSQL's; SQLite instances learn by polling (informational).
    postgres = backend == "postgres"
    bench.figure(
        Figure(
            9,
            f"Revocation across instances, {backend}: sign-out on A to token_revoked on B",
            value,
            f"{TARGET_P99_MS:.0f} ms; B's revocation poll every {poll:g} s",
            p99 / TARGET_P99_MS,
            f"p99 <= {TARGET_P99_MS:.0f} ms" if postgres else "",
            p99 <= TARGET_P99_MS if postgres else None,
        )
    )
    bench.results.series.setdefault("revocation", {})[backend] = {
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max(values),
        "samples_ms": values,
        "misses": misses,
        "poll_s": poll,
    }
