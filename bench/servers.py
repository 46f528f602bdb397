"""The servers under test, each in its own process group: the auth server (`python run.py`
with AUTH_* overrides) and the bare aiohttp reference. Context managers, so every phase
stops its servers on success, exception and Ctrl-C alike."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import procs

REPO = Path(__file__).resolve().parent.parent
# The server's own background purge would otherwise fire at a random moment of the run.
NO_BACKGROUND_PURGE = "1000000000"


@dataclass
class Server:
    """A running server: where it listens, its process, its environment and its log."""

    name: str
    port: int
    process: subprocess.Popen
    env: dict[str, str]
    log: Path
    workers: int = 1
    pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.process.pid)

    def wait_idle(
        self, busy: float = 0.1, window: float = 0.2, timeout: float = 10.0
    ) -> None:
        """Wait until the server uses under `busy` of a core: work queued by the previous
        load (sign-ins waiting for bcrypt) must not leak into the next measurement."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(window)
            if self.cpu_seconds() - before < busy * window:
                return


def auth_env(
    workdir: Path,
    port: int,
    bcrypt_rounds: int,
    *,
    workers: int = 1,
    postgres_dsn: str = "",
    db_name: str = "auth.db",
) -> dict[str, str]:
    """The server's environment: ours without AUTH_*, plus the bench's overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    env.update(
        AUTH_RATELIMIT_ENABLED="false",
        AUTH_STORAGE_PATH=str(workdir / db_name),
        AUTH_SERVER_HOST="127.0.0.1",
        AUTH_SERVER_PORT=str(port),
        AUTH_SERVER_WORKERS=str(workers),
        AUTH_PASSWORDS_BCRYPT_ROUNDS=str(bcrypt_rounds),
        AUTH_PURGE_INTERVAL=NO_BACKGROUND_PURGE,
    )
    if postgres_dsn:
        env.update(AUTH_STORAGE_BACKEND="postgres", AUTH_STORAGE_DSN=postgres_dsn)
    return env


@contextlib.contextmanager
def auth_server(name: str, env: Mapping[str, str], workdir: Path) -> Iterator[Server]:
    """`python run.py` with `env` (from `auth_env`), ready to serve, stopped on exit."""
    with auth_servers([(name, env)], workdir) as (server,):
        yield server


@contextlib.contextmanager
def auth_servers(
    named_envs: list[tuple[str, Mapping[str, str]]], workdir: Path
) -> Iterator[list[Server]]:
    """Several auth servers started at once (their starts overlap: a second or so each
    saved), all ready, all stopped on exit. On one database, make its schema first."""
    with contextlib.ExitStack() as stack:
        starting = [
            stack.enter_context(
                _spawned(
                    name,
                    [sys.executable, str(REPO / "run.py")],
                    dict(env),
                    workdir,
                    int(env["AUTH_SERVER_PORT"]),
                    int(env.get("AUTH_SERVER_WORKERS", "1")),
                )
            )
            for name, env in named_envs
        ]
        yield [_ready(server) for server in starting]


@contextlib.contextmanager
def bare_server(workdir: Path) -> Iterator[Server]:
    """The bare aiohttp reference app on a free port."""
    port = procs.free_port()
    command = [sys.executable, "-m", "bench.bare", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    with _started("bare", command, env, workdir, port, 1) as server:
        yield server


def start_purge(env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """`python run.py purge` against the server's database, as an operator would, in
    its own process group (stop it with procs.stop_group)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(REPO / "run.py"), "purge"],
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def _started(
    name: str,
    command: list[str],
    env: dict[str, str],
    workdir: Path,
    port: int,
    workers: int,
) -> Iterator[Server]:
    with _spawned(name, command, env, workdir, port, workers) as server:
        yield _ready(server)


@contextlib.contextmanager
def _spawned(
    name: str,
    command: list[str],
    env: dict[str, str],
    workdir: Path,
    port: int,
    workers: int,
) -> Iterator[Server]:
    """The process started, not yet ready; stopped (its whole group) on exit."""
    log = workdir / f"{name}-{port}.log"
    with open(
        log, "wb"
    ) as out:  # a file, not a pipe nobody reads: sign-ins log a line each
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Server(name, port, process, env, log, workers)
    finally:
        procs.stop_group(process)


def _ready(server: Server) -> Server:
    """Wait until it serves; its process tree is known from then on."""
    # Workers share the arbiter's one listening socket (gunicorn), not one each.
    procs.wait_ready(server.process, server.port, "/api/test/all", server.log)
    server.pids = procs.tree_pids(server.process.pid)
    return server
