"""The phases, in the order they run: phases 1-6 here, the others in modules of their own.
Each starts the servers it needs and stops them when it ends, however it ends; each figure
is a ratio against a reference measured here, in this run."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import time
from contextlib import ExitStack

import bcrypt

from . import (
    client,
    flood,
    limits,
    longlived,
    procs,
    purging,
    revocation,
    seed,
    servers,
    specs,
    uncached,
)
from .report import Figure
from .runner import Bench
from .servers import Server

STORM_RAMP_S = 0.5  # lets the sign-in storm fill the hash pool before the probe starts
CHECKPW_SAMPLES = 5


def run_all(bench: Bench) -> None:
    selected = set(bench.config.phases)
    if selected & {1, 2, 3, 7}:
        _main_server_phases(bench, selected)
    if 8 in selected:
        with bench.phase(8, "refresh with rate limits on, sqlite"):
            limits.refresh_with_limits(bench)
    if 4 in selected:
        for backend in specs.backends(bench):
            with bench.phase(4, f"refresh with rotation, {backend}"):
                refresh_curve(bench, backend)
    if 5 in selected:
        for mode in purging.MODES:
            with bench.phase(5, f"purge under load, {mode}"):
                purging.purge_under_load(bench, mode)
    if 6 in selected:
        with bench.phase(6, "workers"):
            workers_scaling(bench)
    for backend in specs.backends(bench):
        if 9 in selected:
            with bench.phase(9, f"revocation across instances, {backend}"):
                revocation.across_instances(bench, backend)
        if 10 in selected:
            with bench.phase(10, f"refresh under a junk flood, {backend}"):
                flood.refresh_under_flood(bench, backend)
        if 11 in selected:
            with bench.phase(11, f"long-lived session, {backend}"):
                longlived.long_session(bench, backend)


def _main_server_phases(bench: Bench, selected: set[int]) -> None:
    """Phases 1-3 and 7 share one server: a fresh database, the bench user signed up over
    the API, passwords.hash_workers as --hash-workers says (the cores by default)."""
    env = {**specs.env_for(bench, "main.db"), **specs.hash_workers_env(bench)}
    first = min(selected & {1, 2, 3, 7})
    with (
        bench.phase(first, "start the server of phases 1-3 and 7"),
        servers.auth_server("auth", env, bench.workdir) as server,
    ):
        client.signup(server.port)
        signed_in = client.signin(server.port)
        token = signed_in["accessToken"]
        if 1 in selected:
            with bench.phase(1, "protected route vs bare aiohttp"):
                protected_overhead(bench, server, token)
        if 7 in selected:
            with bench.phase(7, "protected route, uncached, vs bare aiohttp"):
                uncached.protected_uncached(bench, server, signed_in)
        if 2 in selected:
            with bench.phase(2, "sign-in vs bcrypt bound"):
                signin_throughput(bench, server)
        if 3 in selected:
            with bench.phase(3, "event loop under a sign-in storm"):
                storm_latency(bench, server, token)


# phase 1


def protected_overhead(bench: Bench, server: Server, token: str) -> None:
    """GET /api/test/user with a valid token vs the same body from a bare aiohttp app."""
    config = bench.config
    connections = config.connections.throughput
    name = "GET /api/test/user (x-access-token)"
    rounds = []
    for _ in range(config.throughput_rounds):
        reference = specs.bare_reference(bench, connections)
        result = bench.measure(
            specs.user_spec(name, server, token, config.duration, connections), server
        )
        rounds.append((reference, result))
    reference, result, ratio = specs.median_round(rounds)
    target, passed = specs.at_least(ratio, 0.85)
    bench.figure(
        Figure(
            1,
            "Protected route req/s vs bare aiohttp, cached (one token)",
            f"{result.rps:,.0f} req/s ({specs.ms(result)})",
            f"{reference.rps:,.0f} req/s ({specs.ms(reference)})",
            ratio,
            target,
            passed,
        )
    )
    bench.results.series["protected"] = {
        "bare": specs.point(reference),
        "auth": specs.point(result),
    }


# phase 2


def checkpw_seconds(rounds: int) -> float:
    """The median time of one bcrypt.checkpw at `rounds`, on a 44-byte input like the
    server's (base64 of a SHA-256)."""
    password = b"A" * 44
    hashed = bcrypt.hashpw(password, bcrypt.gensalt(rounds))
    samples = []
    for _ in range(CHECKPW_SAMPLES):
        began = time.perf_counter()
        bcrypt.checkpw(password, hashed)
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def signin_throughput(bench: Bench, server: Server) -> None:
    """Sign-ins per second against what every core could hash: cores / the time of one
    checkpw (the target), and against the server's hashing threads (when fewer)."""
    threads, cores = specs.hash_threads(server), os.cpu_count() or 1
    one = checkpw_seconds(bench.config.bcrypt_rounds)
    bound = cores / one
    result = bench.measure(
        specs.signin_spec(bench, server, bench.config.duration), server, warm=False
    )
    ratio = result.rps / bound
    target, passed = specs.at_least(ratio, 0.90)
    measured = f"{result.rps:,.1f} req/s ({specs.ms(result)})"
    bench.figure(
        Figure(
            2,
            "Sign-in req/s vs all-cores bcrypt bound; "
            + specs.hash_workers_label(bench, server),
            measured,
            f"{bound:,.1f} req/s = {cores} core(s) / {one * 1000:.1f} ms checkpw",
            ratio,
            target,
            passed,
        )
    )
    if threads != cores:
        bench.figure(
            Figure(
                2,
                "Sign-in req/s vs the bound of its hashing threads",
                measured,
                f"{threads / one:,.1f} req/s = {threads} thread(s) / checkpw",
                result.rps / (threads / one),
            )
        )
    bench.results.series["signin"] = {
        "rps": result.rps,
        "bound": bound,
        "cores": cores,
        "threads": threads,
        "checkpw_ms": one * 1000,
    }


# phase 3


def storm_latency(bench: Bench, server: Server, token: str) -> None:
    """p50/p99 of the protected route alone, then while sign-ins saturate the hash pool."""
    config = bench.config
    probe = specs.user_spec(
        "GET /api/test/user, idle (probe)",
        server,
        token,
        config.duration,
        config.connections.probe,
    )
    idle = bench.measure(probe, server, warm=False)
    storm_spec = dataclasses.replace(
        specs.signin_spec(bench, server, config.duration + 2 * STORM_RAMP_S + 1),
        name="POST /api/auth/signin (storm)",
    )
    with bench.background(storm_spec) as storm:
        time.sleep(STORM_RAMP_S)
        during = bench.measure(
            dataclasses.replace(
                probe, name="GET /api/test/user during sign-in storm (probe)"
            ),
            server,
            warm=False,
            settle=False,
        )
        storm.stop()
        bench.record(storm.result())
    ratio = during.p99_ms / idle.p99_ms if idle.p99_ms else float("inf")
    bench.figure(
        Figure(
            3,
            "Protected route p99 under sign-in storm vs idle; "
            + specs.hash_workers_label(bench, server),
            specs.ms(during),
            specs.ms(idle),
            ratio,
            "<= 2.00",
            ratio <= 2.0,
        )
    )
    bench.results.series["storm"] = {
        "idle": specs.point(idle),
        "storm": specs.point(during),
    }


# phase 4


def refresh_curve(bench: Bench, backend: str) -> None:
    """Refresh req/s and p99 as the store grows: one server, the store seeded up to each
    size in turn while it idles, each measurement presenting tokens never presented."""
    with ExitStack() as stack:
        dsn = ""
        if backend == "postgres":
            dsn = stack.enter_context(seed.postgres_schema(bench.config.postgres_dsn))
        env = specs.env_for(bench, f"refresh-{backend}.db", dsn=dsn)
        store = seed.Store(backend, dsn or env["AUTH_STORAGE_PATH"])
        user_id = asyncio.run(seed.create_user(store))
        server = stack.enter_context(
            servers.auth_server(f"refresh-{backend}", env, bench.workdir)
        )
        points = _grow_and_measure(bench, server, store, user_id)
    _refresh_figures(bench, backend, points)
    bench.results.series.setdefault("refresh", {})[backend] = points


def _grow_and_measure(
    bench: Bench, server: Server, store: seed.Store, user_id: str
) -> list[dict]:
    config, prefix, seeded, points = bench.config, seed.new_prefix(), 0, []
    for size in config.refresh_sizes:
        seconds = asyncio.run(seed.add_sessions(store, user_id, prefix, seeded, size))
        warm, measured = specs.token_files(
            bench, prefix, range(seeded, size), f"{store.backend}-{size}"
        )
        seeded = size
        name = f"refresh, {store.backend}, {size:,} tokens"
        specs.warm_refresh(bench, server, warm, config.connections.refresh)
        spec = specs.refresh_spec(
            name, server, measured, config.duration, config.connections.refresh
        )
        result = bench.measure(spec, server)
        points.append(
            {
                "tokens": size,
                "rps": result.rps,
                "p99_ms": result.p99_ms,
                "p50_ms": result.p50_ms,
                "seed_s": round(seconds, 2),
            }
        )
    return points


def _refresh_figures(bench: Bench, backend: str, points: list[dict]) -> None:
    first = points[0]
    for point in points:
        ratio = point["rps"] / first["rps"]
        last = point is points[-1] and len(points) > 1
        target, passed = specs.at_least(ratio, 0.80) if last else ("", None)
        bench.figure(
            Figure(
                4,
                f"Refresh (rotation), {backend}, {point['tokens']:,} stored tokens",
                f"{point['rps']:,.0f} req/s (p99 {point['p99_ms']:.2f} ms)",
                f"{first['rps']:,.0f} req/s at {first['tokens']:,}",
                ratio,
                target,
                passed,
            )
        )


# phase 6


def workers_scaling(bench: Bench) -> None:
    """Protected and refresh throughput with 1 worker, then with more, sharing the port."""
    config = bench.config
    env = specs.env_for(bench, "workers.db")
    store = seed.Store("sqlite", env["AUTH_STORAGE_PATH"])
    user_id = asyncio.run(seed.create_user(store))
    prefix, per_run = seed.new_prefix(), config.refresh_sizes[0]
    counts = config.worker_counts
    asyncio.run(seed.add_sessions(store, user_id, prefix, 0, per_run * len(counts)))
    rps: dict[str, dict[str, float]] = {"protected": {}, "refresh": {}}
    for n, workers in enumerate(counts):
        env = {
            **env,
            "AUTH_SERVER_WORKERS": str(workers),
            "AUTH_SERVER_PORT": str(procs.free_port()),
        }
        tokens = seed.write_tokens(
            bench.workdir / f"workers-{workers}.txt",
            prefix,
            range(n * per_run, (n + 1) * per_run)[: config.token_list_cap],
        )
        with servers.auth_server(f"workers-{workers}", env, bench.workdir) as server:
            token = client.signin(server.port)["accessToken"]
            name = f"GET /api/test/user, {workers} worker(s)"
            spec = specs.user_spec(
                name, server, token, config.duration, config.connections.throughput
            )
            rps["protected"][str(workers)] = bench.measure(spec, server).rps
            spec = specs.refresh_spec(
                f"refresh, {workers} worker(s)",
                server,
                tokens,
                config.duration,
                config.connections.refresh,
            )
            rps["refresh"][str(workers)] = bench.measure(spec, server).rps
    _workers_figures(bench, counts, rps)


def _workers_figures(bench: Bench, counts: tuple[int, ...], rps: dict) -> None:
    base = str(counts[0])
    for route, by_workers in rps.items():
        for workers in counts[1:]:
            value = by_workers[str(workers)]
            bench.figure(
                Figure(
                    6,
                    f"{route.capitalize()} req/s, {workers} workers vs {base}",
                    f"{value:,.0f} req/s",
                    f"{by_workers[base]:,.0f} req/s with {base}",
                    value / by_workers[base],
                )
            )
    bench.results.series["workers"] = rps
