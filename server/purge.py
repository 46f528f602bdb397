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


# A pass stops after this many batches even if rows keep qualifying (writers whose
# clock lags this one's `now`): the next pass goes on, and a pass always ends.
MAX_BATCHES = 10_000


async def purge_once(
    storage: Storage,
    batch_size: int,
    now: int | None = None,
    pause: float = 0,
    metrics: Metrics = NO_METRICS,
    max_batches: int = MAX_BATCHES,
) -> PurgeResult:
    """One full pass: batches until none comes back full (at most `max_batches`), with
    `pause` seconds between batches for other processes' writers (SQLite's busy wait
    polls, so a writer elsewhere needs a gap to get in). `now` is fixed for the pass, so
    rows that qualify only later wait for the next pass. Each batch is counted in
    `metrics` as it commits."""
    now = clock.epoch() if now is None else now
    total = PurgeResult()
    for done in range(1, max_batches + 1):
        batch = await storage.purge_expired(now, batch_size)
        metrics.purged(batch)
        total += batch
        if not _may_remain(batch, batch_size):
            return total
        if done < max_batches:
            await asyncio.sleep(pause)  # let requests in between batches
    logger.warning(
        "purge pass stopped after %d batches; the next pass goes on", max_batches
    )
    return total


def _may_remain(batch: PurgeResult, batch_size: int) -> bool:
    """Whether a part of the batch came back full. `tokens` (expired sessions' tokens
    plus retired ones) and `other` (revocations plus counters) add up several parts, so
    reaching `batch_size` may mean one more, short, batch: never a missed one."""
    return (
        batch.sessions >= batch_size
        or batch.tokens >= batch_size
        or batch.other >= batch_size
    )


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
