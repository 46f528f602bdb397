"""The loads the phases send, the server environment they start, and the small
formatting helpers their figures share."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from server.settings import RateLimitSettings, load_settings

from . import client, procs, seed, servers
from .load import LoadResult, LoadSpec
from .runner import Bench
from .servers import Server

USER_PATH = "/api/test/user"
SIGNIN_PATH = "/api/auth/signin"
REFRESH_PATH = "/api/auth/refreshtoken"
SIGNOUT_PATH = "/api/auth/signout"
NEVER_REACHED = 1_000_000_000  # a rate limit that counts but never refuses


def user_spec(
    name: str, server: Server, token: str, duration: float, connections: int
) -> LoadSpec:
    """GET /api/test/user with the access token in x-access-token."""
    headers = (("x-access-token", token),)
    return LoadSpec(name, server.url, USER_PATH, duration, connections, headers=headers)


def signin_spec(bench: Bench, server: Server, duration: float) -> LoadSpec:
    """JSON sign-ins, enough of them at once to keep every hashing thread busy."""
    per_thread = bench.config.connections.signin_per_hash_thread
    body = json.dumps(client.signin_body())
    return LoadSpec(
        "POST /api/auth/signin",
        server.url,
        SIGNIN_PATH,
        duration,
        hash_threads(server) * per_thread,
        "POST",
        body=body,
    )


def refresh_spec(
    name: str, server: Server, tokens: Path, duration: float, connections: int
) -> LoadSpec:
    """Refreshes presenting the tokens of `tokens`, then their successors."""
    return LoadSpec(
        name, server.url, REFRESH_PATH, duration, connections, "POST", token_file=tokens
    )


def bare_reference(bench: Bench, connections: int) -> LoadResult:
    """The bare aiohttp app's req/s on this machine now, measured by each phase that
    compares with it, just before its own figure: the ceiling of any route."""
    bare = bench.bare()
    spec = LoadSpec(
        "bare aiohttp GET /api/test/user",
        bare.url,
        USER_PATH,
        bench.config.duration,
        connections,
    )
    return bench.measure(spec, bare)


def median_round(
    rounds: list[tuple[LoadResult, LoadResult]],
) -> tuple[LoadResult, LoadResult, float]:
    """Of (reference, measured) rounds taken in turns, the one of the median ratio, and
    that ratio: one round disturbed by the machine's other work does not decide."""
    ranked = sorted(rounds, key=lambda pair: pair[1].rps / pair[0].rps)
    reference, measured = ranked[len(ranked) // 2]
    return reference, measured, measured.rps / reference.rps


def warm_refresh(
    bench: Bench, server: Server, tokens: Path | None, connections: int
) -> None:
    """Unmeasured refreshes with tokens of their own, so the measured ones stay fresh."""
    if tokens is not None and bench.config.warmup > 0:
        spec = refresh_spec(
            "refresh (warm-up)", server, tokens, bench.config.warmup, connections
        )
        bench.start(spec).result()


def token_files(
    bench: Bench, prefix: str, indices: range, label: str
) -> tuple[Path | None, Path]:
    """Token lists from `indices`: one for the warm-up (when there is one) and one for the
    measurement, disjoint, so that no measured request presents a used token."""
    cap = bench.config.token_list_cap
    if bench.config.warmup <= 0:
        return None, seed.write_tokens(
            bench.workdir / f"{label}.txt", prefix, indices[:cap]
        )
    half = len(indices) // 2
    warm = seed.write_tokens(
        bench.workdir / f"{label}-warm.txt", prefix, indices[:half][:cap]
    )
    return warm, seed.write_tokens(
        bench.workdir / f"{label}.txt", prefix, indices[half:][:cap]
    )


def env_for(
    bench: Bench, db_name: str, *, workers: int = 1, dsn: str = ""
) -> dict[str, str]:
    """A server environment on a free port with its own database."""
    return servers.auth_env(
        bench.workdir,
        procs.free_port(),
        bench.config.bcrypt_rounds,
        workers=workers,
        postgres_dsn=dsn,
        db_name=db_name,
    )


def hash_workers_env(bench: Bench) -> dict[str, str]:
    """passwords.hash_workers for the sign-in phases: the cores, a number, or nothing
    (the server's default)."""
    choice = bench.config.hash_workers
    if choice == "server":
        return {}
    workers = (os.cpu_count() or 1) if choice == "cores" else int(choice)
    return {"AUTH_PASSWORDS_HASH_WORKERS": str(workers)}


def hash_workers_label(bench: Bench, server: Server) -> str:
    threads = hash_threads(server)
    if bench.config.hash_workers == "server":
        return f"{threads} hashing thread(s), the server's default"
    return f"{threads} hashing thread(s), set by the bench"


def limits_env(*, reachable: bool) -> dict[str, str]:
    """Rate limits on. Unless `reachable`, every limit is so high that none is reached:
    the bookkeeping is paid, no request is refused. Every `*_limit` setting that exists
    is raised, so limits added later are covered too."""
    env = {"AUTH_RATELIMIT_ENABLED": "true"}
    if not reachable:
        for f in dataclasses.fields(RateLimitSettings):
            if f.name.endswith("_limit"):
                env[f"AUTH_RATELIMIT_{f.name.upper()}"] = str(NEVER_REACHED)
    return env


def backends(bench: Bench) -> list[str]:
    """The backends of phases 4 and 9-11: SQLite, and PostgreSQL with --postgres-dsn
    (only PostgreSQL with --postgres-only)."""
    if not bench.config.postgres_dsn:
        return ["sqlite"]
    return ["postgres"] if bench.config.postgres_only else ["sqlite", "postgres"]


def hash_threads(server: Server) -> int:
    """The server's bcrypt pool size, read the way the server reads it."""
    return load_settings(environ=server.env).passwords.workers


def ms(result: LoadResult) -> str:
    return f"p50 {result.p50_ms:.2f} / p99 {result.p99_ms:.2f} ms"


def at_least(ratio: float, target: float) -> tuple[str, bool]:
    return f">= {target:.2f}", ratio >= target


def at_most(ratio: float, target: float) -> tuple[str, bool]:
    return f"<= {target:.2f}", ratio <= target


def combined(results: list[LoadResult]) -> dict:
    """Several measurements of one thing as one: req/s over all of them, the worst p99."""
    seconds = sum(r.duration_s for r in results)
    return {
        "rps": sum(r.requests for r in results) / seconds if seconds else 0.0,
        "p50_ms": max(r.p50_ms for r in results),
        "p99_ms": max(r.p99_ms for r in results),
        "max_ms": max(r.max_ms for r in results),
        "errors": sum(r.errors for r in results),
        "limited": sum(r.details.get("limited", 0) for r in results),
    }


def point(result: LoadResult) -> dict:
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
    }
