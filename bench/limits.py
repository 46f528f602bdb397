"""Phase 8: refresh with rotation on SQLite with the rate limits on, as production runs,
but so high that none is ever reached: what the limiter's bookkeeping costs, against the
same refreshes with the limits off and against the bare aiohttp app.

The refreshes present tokens of many seeded sessions, each never presented before, then
the successors the answers return (phase 4's load): every request is a real rotation.
Servers with the limits off and on take turns on one database (off, on, off, on, ...),
each measurement with tokens of its own, so that a drift of the machine or of the
database touches both sides alike; the two of a round run side by side, one idling
while the other is measured.
"""

from __future__ import annotations

import asyncio

from . import procs, seed, servers, specs
from .load import LoadResult
from .report import Figure
from .runner import Bench

SIDES = ("off", "on")


def refresh_with_limits(bench: Bench) -> None:
    config = bench.config
    connections = config.connections.refresh
    per_run = 2 * max(connections, config.refresh_sizes[0] // 2)  # warm-up + measured
    env = specs.env_for(bench, "limits.db")
    store = seed.Store("sqlite", env["AUTH_STORAGE_PATH"])
    user_id = asyncio.run(seed.create_user(store))
    prefix = seed.new_prefix()
    runs = 2 * config.limits_rounds
    asyncio.run(seed.add_sessions(store, user_id, prefix, 0, per_run * runs))
    reference = specs.bare_reference(bench, config.connections.throughput)
    results: dict[str, list[LoadResult]] = {side: [] for side in SIDES}
    for round_ in range(config.limits_rounds):
        # Both sides of a round start together (the starts overlap) on the one
        # database; each is measured while the other idles.
        named = [(f"limits-{side}", _env(env, side)) for side in SIDES]
        with servers.auth_servers(named, bench.workdir) as started:
            for side, server in zip(SIDES, started, strict=True):
                index = 2 * round_ + SIDES.index(side)
                indices = range(index * per_run, (index + 1) * per_run)
                warm, measured = specs.token_files(
                    bench, prefix, indices, f"limits-{side}-{round_}"
                )
                specs.warm_refresh(bench, server, warm, connections)
                name = f"refresh, sqlite, rate limits {side}, round {round_ + 1}"
                spec = specs.refresh_spec(
                    name, server, measured, config.duration, connections
                )
                results[side].append(bench.measure(spec, server))
    _figures(bench, reference, results)


def _env(env: dict[str, str], side: str) -> dict[str, str]:
    limits = (
        specs.limits_env(reachable=False)
        if side == "on"
        else {"AUTH_RATELIMIT_ENABLED": "false"}
    )
    return {**env, **limits, "AUTH_SERVER_PORT": str(procs.free_port())}


def _figures(
    bench: Bench, reference: LoadResult, results: dict[str, list[LoadResult]]
) -> None:
    off, on = (specs.combined(results[side]) for side in SIDES)
    refused = on["errors"] + on["limited"]
    ratio = on["rps"] / reference.rps
    target, passed = specs.at_least(ratio, 0.09)
    value = f"{on['rps']:,.0f} req/s (p99 {on['p99_ms']:.2f} ms)"
    if refused:
        value += f"; {on['errors']:,} errors, {on['limited']:,} of them 429"
    bench.figure(
        Figure(
            8,
            "Refresh (rotation), sqlite, rate limits on (never reached) vs bare aiohttp",
            value,
            f"{reference.rps:,.0f} req/s bare aiohttp",
            ratio,
            target,
            passed and not refused,
        )
    )
    share = on["rps"] / off["rps"] if off["rps"] else 0.0
    bench.figure(
        Figure(
            8,
            "Rate-limit bookkeeping: refresh req/s with limits on vs off",
            value,
            f"{off['rps']:,.0f} req/s (p99 {off['p99_ms']:.2f} ms) with limits off",
            share,
            ">= 0.95 (costs <= 5 %)",
            share >= 0.95 and not refused,
        )
    )
    bench.results.series["limits"] = {
        "bare": specs.point(reference),
        "off": off,
        "on": on,
        "rounds": len(results["on"]),
    }
