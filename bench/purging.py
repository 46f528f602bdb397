"""Phase 5: many expired tokens purged while the protected and refresh routes are under
load, by `python run.py purge` (another process, as an operator runs it) and by the
running server's own background purge. The worst latency during each, against the same
load without a purge."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from . import client, procs, seed, servers, specs
from .report import Figure
from .runner import Bench
from .servers import Server

MODES = ("cli", "server")
GENERATOR_START_S = 0.3  # lets the background loads connect before the purge starts
POLL_S = 0.2


def purge_under_load(bench: Bench, mode: str) -> None:
    config = bench.config
    env = specs.env_for(bench, f"purge-{mode}.db")
    prefix = _seed(bench, env["AUTH_STORAGE_PATH"])
    live = config.purge_live
    before = seed.write_tokens(
        bench.workdir / f"purge-{mode}-a.txt", prefix, range(live // 2)
    )
    during = seed.write_tokens(
        bench.workdir / f"purge-{mode}-b.txt", prefix, range(live // 2, live)
    )
    with servers.auth_server(f"purge-{mode}", env, bench.workdir) as server:
        token = client.signin(server.port)["accessToken"]
        without = _loads(bench, server, token, before, f"without purge ({mode})")
        if mode == "cli":
            purge = _cli_purge(bench, server, token, during, env)
    if mode == "server":  # the same database, now served with the background purge on
        env = {**env, "AUTH_PURGE_INTERVAL": str(config.server_purge_interval)}
        with servers.auth_server("purge-server-on", env, bench.workdir) as server:
            purge = _server_purge(
                bench, server, token, during, env["AUTH_STORAGE_PATH"]
            )
    _figures(bench, mode, without, purge)


def _seed(bench: Bench, path: str) -> str:
    store = seed.Store("sqlite", path)
    live, expired = bench.config.purge_live, bench.config.purge_expired
    user_id = asyncio.run(seed.create_user(store))
    prefix = seed.new_prefix()
    asyncio.run(seed.add_sessions(store, user_id, prefix, 0, live))
    asyncio.run(
        seed.add_sessions(store, user_id, prefix, live, live + expired, expired=True)
    )
    return prefix


def _loads(
    bench: Bench,
    server: Server,
    token: str,
    tokens: Path,
    label: str,
    purge: Callable[[], dict] | None = None,
    settle: bool = True,
) -> dict:
    """Both routes under load together for the measurement's duration or, with `purge`
    (a callable returning the purge's record), until the purge is done."""
    probe = bench.config.connections.purge_probe
    duration = bench.config.purge_watch + 10 if purge else bench.config.duration
    user = specs.user_spec(
        f"GET /api/test/user, {label}", server, token, duration, probe
    )
    refresh = specs.refresh_spec(f"refresh, {label}", server, tokens, duration, probe)
    record: dict = {}
    if settle:
        server.wait_idle()
    with bench.background(user) as user_run, bench.background(refresh) as refresh_run:
        if purge is not None:
            time.sleep(GENERATOR_START_S)
            record = purge()
            user_run.stop()
            refresh_run.stop()
        results = [bench.record(user_run.result()), bench.record(refresh_run.result())]
    return {
        **record,
        "max_ms": max(r.max_ms for r in results),
        "p99_ms": max(r.p99_ms for r in results),
        "requests": sum(r.requests for r in results),
    }


def _cli_purge(
    bench: Bench, server: Server, token: str, tokens: Path, env: dict
) -> dict:
    """`python run.py purge` in its own process, watched until it is done or the watch
    ends (then stopped: what it purged so far stays purged)."""

    def purge() -> dict:
        log = bench.workdir / "purge-command.log"
        process = servers.start_purge(env, log)
        try:
            return _watch(
                bench, env["AUTH_STORAGE_PATH"], lambda: process.poll() is not None
            )
        finally:
            procs.stop_group(process)

    return _loads(bench, server, token, tokens, "during purge (cli)", purge)


def _server_purge(
    bench: Bench, server: Server, token: str, tokens: Path, path: str
) -> dict:
    """The server purges by itself in the background."""
    label = "during purge (server)"
    # No settling: the server may already be purging, which is what is measured.
    return _loads(
        bench, server, token, tokens, label, lambda: _watch(bench, path), settle=False
    )


def _watch(bench: Bench, path: str, exited: Callable[[], bool] = lambda: False) -> dict:
    """Watch the expired sessions go, from the first poll that sees some gone to the one
    that sees none left (to within POLL_S), for at most `purge_watch` seconds: a purge
    that yields to live traffic can take minutes, and the latency while it runs is what
    this phase is about. An unfinished purge is reported with its rate."""
    total = bench.config.purge_expired
    deadline = time.perf_counter() + bench.config.purge_watch
    began = None
    while True:
        left = _expired(path)
        now = time.perf_counter()
        if began is None and left < total:
            began = now
        if left == 0 or now >= deadline or (exited() and _expired(path) == left):
            took = now - (began or now)
            return {"purge_s": took, "purged": total - left, "finished": left == 0}
        time.sleep(POLL_S)


def _expired(path: str) -> int:
    db = sqlite3.connect(path, timeout=30)
    try:
        row = db.execute(
            "SELECT count(*) FROM sessions WHERE expires_at <= ?", (int(time.time()),)
        ).fetchone()
    finally:
        db.close()
    return row[0]


def _figures(bench: Bench, mode: str, without: dict, during: dict) -> None:
    expired = bench.config.purge_expired
    how = "python run.py purge" if mode == "cli" else "the running server's purge"
    took, purged = during["purge_s"], during["purged"]
    if during["finished"]:
        value = f"{took:.1f} s"
    else:
        rate = purged / took if took else 0.0
        whole = f", all in ~{expired / rate:.0f} s" if rate else ""
        value = f"unfinished: {purged:,} in {took:.0f} s ({rate:,.0f}/s{whole})"
    bench.figure(Figure(5, f"Purge of {expired:,} expired tokens by {how}", value))
    ratio = during["max_ms"] / without["max_ms"] if without["max_ms"] else None
    bench.figure(
        Figure(
            5,
            f"Worst request latency during the purge ({mode})",
            f"max {during['max_ms']:.1f} ms (p99 {during['p99_ms']:.2f} ms)",
            f"max {without['max_ms']:.1f} ms (p99 {without['p99_ms']:.2f} ms) without",
            ratio,
            "max <= 100 ms",
            during["max_ms"] <= 100,
        )
    )
    series = bench.results.series.setdefault("purge", {"expired": expired})
    series[mode] = {"without": without, "during": during}
