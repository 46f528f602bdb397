"""Serving: one process, or `server.workers` processes under gunicorn's arbiter
(server/workers.py). Both go through the edge (server/edge.py): the same timeouts,
connection cap and error answers.

Before anything listens, `serve` checks what would otherwise fail in every worker: the
memory backend with several workers, an unusable key file or storage (one clear line
and exit 1, never a traceback or a process that neither serves nor exits), a taken
port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

from aiohttp.http_exceptions import HttpProcessingError

from storage import create_storage

from . import signing_keys
from .app import create_app
from .edge import EdgeLimits, EdgeRunner
from .listener import EdgeSite, listen
from .multiproc import shared_metrics_directory, single_process_metrics
from .settings import Settings, SettingsError

logger = logging.getLogger("auth.server")
GRACEFUL_TIMEOUT = 10.0  # SIGTERM: requests in progress get this long to finish


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT. Raises SettingsError (a one-line message) when
    the server cannot start."""
    server = settings.server
    if server.workers > 1 and settings.storage.backend == "memory":
        raise SettingsError(
            'storage.backend = "memory" keeps users in each process\'s memory, so it '
            "cannot run with more than one worker: use sqlite or postgres, or one worker"
        )
    presence = signing_keys.announce_presence(settings)  # held while serving
    try:
        signing_keys.load_key_ring(settings)  # refuse a bad key file now, once
        if server.workers > 1:  # one line now, not one per worker under gunicorn
            asyncio.run(_check_storage(settings))
        limits = EdgeLimits.from_settings(server)
        sockets = _listen(settings)
        if server.workers == 1:
            single_process_metrics()
            asyncio.run(_serve_one(settings, sockets, limits))
        else:
            from .workers import run_workers  # gunicorn only where it is used

            with (
                shared_metrics_directory()
                if settings.metrics.enabled
                else contextlib.nullcontext()
            ):
                run_workers(settings, sockets, limits)
    finally:
        presence.close()


async def _check_storage(settings: Settings) -> None:
    """Open and close the storage once: a bad DSN or an unreachable database raises
    its one-line StorageError before any worker starts."""
    storage = create_storage(settings)
    await storage.open()
    await storage.close()


def _listen(settings: Settings) -> list[socket.socket]:
    server = settings.server
    try:
        return listen(server.host, server.port)
    except OSError as exc:  # the port is taken, or the address is not ours
        reason = exc.strerror or str(exc)
        raise SettingsError(
            f"cannot listen on {server.host}:{server.port}: {reason}"
        ) from None


async def _serve_one(
    settings: Settings, sockets: list[socket.socket], limits: EdgeLimits
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = EdgeRunner(create_app(settings), limits, shutdown_timeout=GRACEFUL_TIMEOUT)
    try:
        await runner.setup()
        for sock in sockets:
            await EdgeSite(runner, sock).start()
        server = settings.server
        print(
            f"======== Running on http://{server.host}:{server.port} ========\n"
            "(Press CTRL+C to quit)",
            flush=True,
        )
        await stop.wait()
    finally:
        await runner.cleanup()
        for sock in sockets:
            sock.close()


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a full traceback for every request its parser refuses (a 400 to the
    client, with nothing wrong on the server): keep one short line, so that hostile
    clients cannot flood the log. (The edge answers these itself; this covers servers
    built without it, such as the test client's.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = f"{record.getMessage()}: {type(error).__name__} ({error.code})"
            record.args, record.exc_info, record.exc_text = (), None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())
