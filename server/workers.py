"""Several worker processes under gunicorn's arbiter, embedded: `python run.py --workers N`.

The arbiter (the process started) holds the listening sockets, which `serve` bound, and
forks N workers that accept on them. It replaces a worker that dies (SIGKILL, the OOM
killer, a native crash) at once, while the others keep serving; SIGTERM stops them all
gracefully within GRACEFUL_TIMEOUT; SIGHUP starts a new worker, waits until it serves,
then stops an old one, one by one: the port never closes and capacity never drops.

Each worker builds its own app (`create_app`) and serves it through the edge
(`server.edge`), as the single process does. gunicorn's own log lines go through our
logging configuration. Metrics are merged across workers by prometheus-client's
multiprocess mode (server/multiproc.py): `serve` sets up the directory before the
arbiter forks, and the arbiter's `child_exit` hook retires a dead worker's gauges.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Any

from aiohttp.worker import GunicornWebWorker
from gunicorn import glogging
from gunicorn import sock as gunicorn_sock
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from storage import StorageError

from .app import create_app
from .edge import FRESH_GRACE, EdgeLimits, EdgeRunner
from .listener import LISTEN_BACKLOG, EdgeSite
from .multiproc import worker_exited
from .settings import Settings, SettingsError

GRACEFUL_TIMEOUT = 10
WORKER_TIMEOUT = 30  # seconds a worker's event loop may stall before it is replaced
BOOT_POLL = 0.05


def run_workers(
    settings: Settings, sockets: list[socket.socket], limits: EdgeLimits
) -> None:
    """Serve with `settings.server.workers` processes on the bound `sockets` until
    SIGTERM or SIGINT. Exits the process (gunicorn's arbiter ends with sys.exit)."""
    WorkersApplication(settings, sockets, limits).run()


class WorkersApplication(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from our settings, not from its command line or files."""

    def __init__(
        self, settings: Settings, sockets: list[socket.socket], limits: EdgeLimits
    ) -> None:
        self.settings = settings
        self.sockets = sockets
        self.limits = limits
        super().__init__()

    def load_config(self) -> None:
        server = self.settings.server
        host = f"[{server.host}]" if ":" in server.host else server.host
        options: dict[str, Any] = {
            "bind": [f"{host}:{server.port}"],
            "workers": server.workers,
            "worker_class": AuthWorker,
            "timeout": WORKER_TIMEOUT,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "backlog": LISTEN_BACKLOG,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": server.log_level.lower(),
            "logger_class": GunicornLog,
            "proc_name": "auth-server",
            "control_socket_disable": True,  # no shared socket in the home folder
            "when_ready": _banner,
        }
        if self.settings.metrics.enabled:
            options["child_exit"] = worker_exited
        for name, value in options.items():
            self.cfg.set(name, value)

    def load(self) -> Settings:
        return self.settings

    def run(self) -> None:
        RollingArbiter(self, self.sockets).run()


def _banner(arbiter: Arbiter) -> None:
    server = arbiter.app.settings.server
    print(
        f"======== Running on http://{server.host}:{server.port} "
        f"with {server.workers} workers ========",
        flush=True,
    )


class GunicornLog(glogging.Logger):  # type: ignore[misc]
    """gunicorn's arbiter and worker lines ("Booting worker", "Worker was sent
    SIGKILL!") through the root logger that `configure_logging` set up."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True


class RollingArbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's arbiter on sockets bound beforehand, with a rolling SIGHUP."""

    def __init__(self, app: WorkersApplication, sockets: list[socket.socket]) -> None:
        super().__init__(app)
        self.LISTENERS = [_listener(sock, self.cfg, self.log) for sock in sockets]

    def handle_hup(self) -> None:
        """Replace the workers one at a time, each only once its successor serves. The
        settings stay those of the start (restart the server to change them)."""
        self.log.info("Hang up: restarting the workers one by one")
        for pid in sorted(self.WORKERS, key=lambda p: self.WORKERS[p].age):
            if pid not in self.WORKERS:
                continue
            fresh = self.spawn_worker()
            if not self._serving(fresh):
                self.log.error("a new worker did not start: the others keep running")
                return
            self.kill_worker(pid, signal.SIGTERM)

    def _serving(self, pid: int) -> bool:
        """Whether the worker `pid` has started serving: a worker touches its heartbeat
        file only once its listeners accept. False if it exits or times out first."""
        worker = self.WORKERS[pid]
        first = worker.tmp.last_update()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if worker.tmp.last_update() != first:
                return True
            status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if status is not None:
                return False  # reaped by the main loop, which decides what follows
            time.sleep(BOOT_POLL)
        return False


def _listener(sock: socket.socket, cfg: Any, log: Any) -> Any:
    """A gunicorn listener around a socket bound by `serve` (which owns no copy)."""
    kind = gunicorn_sock.TCP6Socket if sock.family == socket.AF_INET6 else None
    kind = kind or gunicorn_sock.TCPSocket
    return kind(sock.getsockname(), cfg, log, fd=sock.detach())


class AuthWorker(GunicornWebWorker):  # type: ignore[misc]
    """aiohttp's gunicorn worker, serving our app through the edge (`EdgeRunner`,
    `EdgeSite`) rather than a plain AppRunner: same limits as a single process."""

    async def _run(self) -> None:
        plan: WorkersApplication = self.app
        runner = EdgeRunner(
            create_app(plan.settings),
            plan.limits,
            # Within the arbiter's GRACEFUL_TIMEOUT: up to a second to see the signal,
            # FRESH_GRACE for just-accepted connections, then requests in progress.
            shutdown_timeout=GRACEFUL_TIMEOUT - 1 - FRESH_GRACE - 1,
        )
        try:
            await runner.setup()
        except (SettingsError, StorageError) as exc:
            self.log.error("worker cannot start: %s", exc)
            await runner.cleanup()
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        for listener in self.sockets:
            await EdgeSite(runner, listener.sock).start()
        self.booted = True
        self.log.info("Worker serving (pid: %s)", os.getpid())
        server = runner.server
        assert server is not None
        pid = os.getpid()
        while self.alive:
            self.notify()
            if self.max_requests and server.requests_count > self.max_requests:
                self.alive = False
                self.log.info("Max requests, shutting down: %s", self)
            elif pid == os.getpid() and self.ppid != os.getppid():
                self.alive = False
                self.log.info("Parent changed, shutting down: %s", self)
            else:
                await self._wait_next_notify()
        await runner.cleanup()
