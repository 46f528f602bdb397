"""The loads the phases send, the server environment they start, and the small
formatting helpers their figures share."""

from __future__ import annotations

import json
from pathlib import Path

from server.settings import load_settings

from . import client, procs, servers
from .load import LoadResult, LoadSpec
from .runner import Bench
from .servers import Server

USER_PATH = "/api/test/user"
SIGNIN_PATH = "/api/auth/signin"
REFRESH_PATH = "/api/auth/refreshtoken"


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


def hash_threads(server: Server) -> int:
    """The server's bcrypt pool size, read the way the server reads it."""
    return load_settings(environ=server.env).passwords.workers


def ms(result: LoadResult) -> str:
    return f"p50 {result.p50_ms:.2f} / p99 {result.p99_ms:.2f} ms"


def at_least(ratio: float, target: float) -> tuple[str, bool]:
    return f">= {target:.2f}", ratio >= target


def point(result: LoadResult) -> dict:
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
    }
