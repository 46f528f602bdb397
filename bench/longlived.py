"""Phase 11: the refresh rate of sessions rotated `long_rotations` times against fresh
sessions, on one server and one database.

The long sessions are seeded straight into the database (bench/seed.py `add_chains`) as
rotation leaves them: a chain of retired refresh tokens, each pointing to its successor,
retired one every 10 s up to now, and one current token. The fresh sessions have one
token each. Each measurement runs `connections.long_chains` connections on as many
sessions: every request presents the current token of its session and the next one
presents the successor it got back, so every request is a real rotation of that chain.
Fresh sessions are measured before and after the long ones (each time sessions of their
own), and the long sessions' rate is compared with the mean of the two, so that a drift
during the phase does not pass for an effect of the chains' length.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from . import seed, servers, specs
from .load import LoadResult
from .report import Figure
from .runner import Bench
from .servers import Server


def long_session(bench: Bench, backend: str) -> None:
    config = bench.config
    chains, rotations = config.connections.long_chains, config.long_rotations
    with contextlib.ExitStack() as stack:
        dsn = ""
        if backend == "postgres":
            dsn = stack.enter_context(seed.postgres_schema(config.postgres_dsn))
        env = specs.env_for(bench, f"long-{backend}.db", dsn=dsn)
        store = seed.Store(backend, dsn or env["AUTH_STORAGE_PATH"])
        user_id = asyncio.run(seed.create_user(store))
        current = asyncio.run(seed.add_chains(store, user_id, chains, rotations))
        long_file = bench.workdir / f"long-{backend}.txt"
        long_file.write_text("".join(token + "\n" for token in current))
        prefix = seed.new_prefix()
        warm_count = max(chains, config.refresh_sizes[0] // 2)
        asyncio.run(
            seed.add_sessions(store, user_id, prefix, 0, warm_count + 2 * chains)
        )
        warm = seed.write_tokens(
            bench.workdir / f"long-{backend}-warm.txt", prefix, range(warm_count)
        )
        fresh_files = [
            seed.write_tokens(
                bench.workdir / f"long-{backend}-fresh-{n}.txt",
                prefix,
                range(warm_count + n * chains, warm_count + (n + 1) * chains),
            )
            for n in range(2)
        ]
        server = stack.enter_context(
            servers.auth_server(f"long-{backend}", env, bench.workdir)
        )
        specs.warm_refresh(bench, server, warm, chains)
        before = _measure(bench, server, f"fresh sessions, {backend}", fresh_files[0])
        long = _measure(
            bench, server, f"sessions rotated {rotations:,} times, {backend}", long_file
        )
        after = _measure(
            bench, server, f"fresh sessions, {backend}, again", fresh_files[1]
        )
    _figure(bench, backend, rotations, long, [before, after])


def _measure(bench: Bench, server: Server, name: str, tokens: Path) -> LoadResult:
    config = bench.config
    spec = specs.refresh_spec(
        f"refresh, {name}",
        server,
        tokens,
        config.duration,
        config.connections.long_chains,
    )
    return bench.measure(spec, server)


def _figure(
    bench: Bench,
    backend: str,
    rotations: int,
    long: LoadResult,
    fresh: list[LoadResult],
) -> None:
    fresh_rps = sum(r.rps for r in fresh) / len(fresh)
    ratio = long.rps / fresh_rps if fresh_rps else 0.0
    target, passed = specs.at_least(ratio, 0.90)
    failed = long.errors + sum(r.errors for r in fresh)
    value = f"{long.rps:,.0f} req/s ({specs.ms(long)})"
    if failed:
        value += f"; {failed:,} refreshes failed"
    bench.figure(
        Figure(
            11,
            f"Refresh of sessions rotated {rotations:,} times vs fresh ones, {backend}",
            value,
            " / ".join(f"{r.rps:,.0f}" for r in fresh)
            + " req/s fresh (before / after)",
            ratio,
            target,
            passed and not failed,
        )
    )
    bench.results.series.setdefault("longlived", {})[backend] = {
        "rotations": rotations,
        "long": specs.point(long),
        "fresh": [specs.point(r) for r in fresh],
    }
