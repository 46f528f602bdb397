"""Phase 10: valid refreshes while a flood of junk runs beside them, rate limits on.

The bench's generators stand for a reverse proxy (`server.trusted_proxies` = 127.0.0.1)
in front of two populations, told apart by X-Forwarded-For, from RFC 2544's benchmarking
range 198.18.0.0/15:

- the legitimate clients, a few connections of valid refreshes (phase 4's load: every
  request a real rotation), each request from the next of `legit_addresses` addresses
  (198.18.0.0 up), so that each address stays far under `ratelimit.refresh_ip_limit`:
  many users behind the proxy, none of them limited;
- the attacker, more connections sending POST /api/auth/refreshtoken and
  /api/auth/signout in turn with random tokens, each request from the next of
  `flood_addresses` addresses (198.19.0.0 up): a botnet spread so thin that no address
  reaches a limit either, so every junk request is processed whole, the worst case (an
  attacker from a few addresses would soon be answered 429). Its answers, 403
  `refresh_unknown`, 200 for the sign-outs, 429 if a limit is reached, are not errors.

The limits are the server's defaults, only switched on. The figure is the valid
refreshes' p99 under the flood over their p99 alone, measured one after the other on one
server; the flood starts `flood_ramp` seconds before the measurement, so it is at full
strength throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path

from . import seed, servers, specs
from .load import LoadResult, LoadSpec
from .report import Figure
from .runner import Bench
from .servers import Server

PROXY = "127.0.0.1"
LEGIT_FIRST = "198.18.0.0"
FLOOD_FIRST = "198.19.0.0"
FLOOD_ANSWERS = (403, 429)  # refresh_unknown; a limit reached (sign-outs answer 200)


def refresh_under_flood(bench: Bench, backend: str) -> None:
    config = bench.config
    with contextlib.ExitStack() as stack:
        dsn = ""
        if backend == "postgres":
            dsn = stack.enter_context(seed.postgres_schema(config.postgres_dsn))
        env = {
            **specs.env_for(bench, f"flood-{backend}.db", dsn=dsn),
            **specs.limits_env(reachable=True),
            "AUTH_SERVER_TRUSTED_PROXIES": PROXY,
        }
        store = seed.Store(backend, dsn or env["AUTH_STORAGE_PATH"])
        user_id = asyncio.run(seed.create_user(store))
        prefix = seed.new_prefix()
        per_run = max(config.connections.legit, config.refresh_sizes[0] // 2)
        asyncio.run(seed.add_sessions(store, user_id, prefix, 0, 3 * per_run))
        files = [
            seed.write_tokens(
                bench.workdir / f"flood-{backend}-{n}.txt",
                prefix,
                range(n * per_run, (n + 1) * per_run)[: config.token_list_cap],
            )
            for n in range(3)
        ]
        server = stack.enter_context(
            servers.auth_server(f"flood-{backend}", env, bench.workdir)
        )
        alone, under, junk = _measure(bench, server, backend, files)
    _figure(bench, backend, alone, under, junk)


def _measure(
    bench: Bench, server: Server, backend: str, files: list[Path]
) -> tuple[LoadResult, LoadResult, LoadResult]:
    config = bench.config
    warm, alone_tokens, flood_tokens = files
    if config.warmup > 0:  # from the legitimate addresses too: no limit reached
        warm_spec = _legit(bench, server, f"valid refreshes, {backend}, warm-up", warm)
        bench.start(dataclasses.replace(warm_spec, duration=config.warmup)).result()
    alone = bench.measure(
        _legit(bench, server, f"valid refreshes, {backend}, alone", alone_tokens),
        server,
    )
    flood_spec = LoadSpec(
        f"flood: random-token refreshes and sign-outs, {backend}",
        server.url,
        specs.REFRESH_PATH,
        config.duration + config.flood_ramp + 1,
        config.connections.flood,
        "POST",
        junk_paths=(specs.REFRESH_PATH, specs.SIGNOUT_PATH),
        forwarded=(FLOOD_FIRST, config.flood_addresses),
        expected=FLOOD_ANSWERS,
    )
    server.wait_idle()
    with bench.background(flood_spec) as flood:
        time.sleep(config.flood_ramp)
        under = bench.measure(
            _legit(
                bench, server, f"valid refreshes, {backend}, under flood", flood_tokens
            ),
            server,
            settle=False,
        )
        flood.stop()
        junk = bench.record(flood.result())
    return alone, under, junk


def _legit(bench: Bench, server: Server, name: str, tokens: Path) -> LoadSpec:
    config = bench.config
    spec = specs.refresh_spec(
        name, server, tokens, config.duration, config.connections.legit
    )
    return dataclasses.replace(spec, forwarded=(LEGIT_FIRST, config.legit_addresses))


def _figure(
    bench: Bench, backend: str, alone: LoadResult, under: LoadResult, junk: LoadResult
) -> None:
    ratio = under.p99_ms / alone.p99_ms if alone.p99_ms else float("inf")
    refused = alone.errors + under.errors
    target, passed = specs.at_most(ratio, 2.0)
    value = f"{specs.ms(under)}, {under.rps:,.0f} req/s"
    if refused:
        value += f"; {refused:,} valid refreshes failed"
    limited = junk.details.get("limited", 0)
    bench.figure(
        Figure(
            10,
            f"Valid refresh p99 under a junk flood vs alone, {backend}, limits on",
            value,
            f"{specs.ms(alone)}, {alone.rps:,.0f} req/s alone; flood "
            f"{junk.rps:,.0f} req/s ({limited:,} answered 429)",
            ratio,
            target,
            passed and not refused,
        )
    )
    bench.results.series.setdefault("flood", {})[backend] = {
        "alone": specs.point(alone),
        "under": specs.point(under),
        "flood": specs.point(junk),
        "flood_limited": limited,
    }
