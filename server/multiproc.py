"""prometheus-client's multiprocess mode for `--workers N`, set up the way gunicorn
deployments do it: PROMETHEUS_MULTIPROC_DIR names a directory before any worker imports
prometheus_client; each worker writes its values to its own files there; a scrape merges
every file (server/metrics.py); gunicorn's `child_exit` hook calls `mark_process_dead`
so that a dead worker's gauges stop counting (its counters keep counting: they are
totals).

The directory is private to one server start: made fresh (mode 0700) by the arbiter, so
no file of an earlier run is ever added in, and removed when the arbiter exits. One
process serving alone keeps its metrics in memory: the variable is cleared for it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from .metrics import MULTIPROC_ENV

PREFIX = "auth-server-metrics-"


@contextlib.contextmanager
def shared_metrics_directory() -> Iterator[str]:
    """A fresh private directory in PROMETHEUS_MULTIPROC_DIR for the life of the
    context, removed afterwards by the process that made it (gunicorn's forked workers
    leave through this context too, and must leave the directory alone)."""
    _refuse_single_process_import()
    owner = os.getpid()
    path = tempfile.mkdtemp(prefix=PREFIX)  # mode 0700, empty
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)
            if previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = previous


def single_process_metrics() -> None:
    """One process: metrics in memory, whatever PROMETHEUS_MULTIPROC_DIR the
    environment had (its files would be added to this server's totals)."""
    os.environ.pop(MULTIPROC_ENV, None)


def worker_exited(arbiter: Any, worker: Any) -> None:
    """gunicorn's `child_exit` hook, in the arbiter: the dead worker's live gauges
    (open WebSockets, pending hashes) no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _refuse_single_process_import() -> None:
    """prometheus-client picks its mode at import: one imported before the variable
    was set would make every forked worker count in memory only, unseen by scrapes."""
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not values.ValueClass._multiprocess:
        raise RuntimeError(
            "prometheus_client was imported before the metrics directory was set up"
        )
