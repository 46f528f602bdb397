"""Deleting expired sessions, refresh tokens, revocations and counters, in batches so
that no transaction holds the database for long. `python run.py purge` and the
background task call the same `purge_once`."""

from __future__ import annotations

import asyncio
import logging
import random

from storage import PurgeResult, Storage

from . import clock
from .metrics import NO_METRICS, Metrics

logger = logging.getLogger("auth.purge")


async def purge_once(
    storage: Storage,
    batch_size: int,
    now: int | None = None,
    pause: float = 0,
    metrics: Metrics = NO_METRICS,
) -> PurgeResult:
    """One full pass: batches until a batch comes back short, with `pause` seconds
    between batches for other processes' writers (SQLite's busy wait polls, so a
    writer elsewhere needs a gap to get in). Each batch is counted in `metrics` as it
    commits."""
    now = clock.epoch() if now is None else now
    total = PurgeResult()
    while True:
        batch = await storage.purge_expired(now, batch_size)
        metrics.purged(batch)
        total += batch
        if batch.sessions < batch_size and batch.other < batch_size:
            return total
        await asyncio.sleep(pause)  # let requests in between batches


async def purge_forever(
    storage: Storage,
    interval: float,
    batch_size: int,
    metrics: Metrics = NO_METRICS,
) -> None:
    """Purge every `interval` seconds; a failed pass is logged and the loop goes on. The
    first pass waits a random part of the interval, so instances started together do
    not purge in lockstep. Each pass is counted in `metrics`."""
    await asyncio.sleep(random.uniform(0, interval))  # noqa: S311
    while True:
        try:
            result = await purge_once(storage, batch_size, metrics=metrics)
            if result.tokens or result.sessions:
                logger.info(
                    "purged %d sessions, %d refresh tokens",
                    result.sessions,
                    result.tokens,
                )
        except Exception:
            logger.exception("purge pass failed")
            metrics.task_failed("purge")
        await asyncio.sleep(interval)
