"""Serving: one process, or `server.workers` processes sharing the port (SO_REUSEPORT)."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
import sys
from types import FrameType

from aiohttp import web

from .app import create_app
from .settings import Settings

logger = logging.getLogger("auth.server")


def serve(settings: Settings) -> None:
    if settings.server.workers == 1:
        _run_worker(settings, reuse_port=False)
        return
    _supervise(settings)


def _run_worker(settings: Settings, reuse_port: bool = True) -> None:
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(name)s %(message)s",
    )
    server = settings.server
    web.run_app(
        create_app(settings),
        host=server.host,
        port=server.port,
        reuse_port=reuse_port or None,
        access_log=None,
        print=print if not reuse_port else None,
    )


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
