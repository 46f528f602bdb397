"""Serving: one process, or `server.workers` processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from types import FrameType

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .app import create_app
from .settings import Settings

logger = logging.getLogger("auth.server")


def serve(settings: Settings) -> None:
    if settings.server.workers == 1:
        _run_worker(settings, reuse_port=False)
        return
    _supervise(settings)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a full traceback for every request its parser refuses (a 400 to the
    client, with nothing wrong on the server): keep one short line, so that hostile
    clients cannot flood the log."""

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
        format="%(asctime)s %(name)s %(message)s",
    )
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())


def _run_worker(settings: Settings, reuse_port: bool = True) -> None:
    configure_logging(settings)
    server = settings.server
    try:
        web.run_app(
            create_app(settings),
            host=server.host,
            port=server.port,
            reuse_port=reuse_port or None,
            access_log=None,
            print=print if not reuse_port else None,
        )
    except OSError as exc:  # the port is taken, or the address is not ours
        print(
            f"error: cannot listen on {server.host}:{server.port}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}",
            file=sys.stderr,
        )
        sys.exit(1)


def _supervise(settings: Settings) -> None:
    """Start the workers, stop them all when told to or when one dies."""
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_run_worker, args=(settings,), name=f"auth-worker-{n}")
        for n in range(settings.server.workers)
    ]
    for worker in workers:
        worker.start()
    print(
        f"======== Running on http://{settings.server.host}:{settings.server.port} "
        f"with {len(workers)} workers ========",
        flush=True,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sentinels = {worker.sentinel: worker for worker in workers}
    multiprocessing.connection.wait(list(sentinels))
    stop(signal.SIGTERM, None)
    for worker in workers:
        worker.join()
    failed = [w for w in workers if w.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        logger.error("worker %s exited with %s", failed[0].name, failed[0].exitcode)
        sys.exit(1)
