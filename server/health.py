"""Whether this process can serve: the storage answers a trivial query within
HEALTH_TIMEOUT. `GET /api/health` answers it (server/handlers/ops.py).

The answer says why a process is unhealthy without saying anything about the database
(no host, no driver message): that goes to the log, once per change of state rather
than once per probe.
"""

from __future__ import annotations

import asyncio
import logging

from storage import Storage

logger = logging.getLogger("auth.health")
HEALTH_TIMEOUT = 2.0  # seconds the storage has to answer


async def ping_storage(storage: Storage) -> None:
    """One cheap round trip to the database; raises when it does not answer."""
    await storage.ping()


class Health:
    """The storage check, and its log of the changes between healthy and not."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.problem: str | None = None

    async def problem_now(self) -> str | None:
        """None when the storage answers within HEALTH_TIMEOUT, else what to tell
        the caller."""
        limit = HEALTH_TIMEOUT
        try:
            async with asyncio.timeout(limit):
                await ping_storage(self.storage)
        except TimeoutError:
            return self._record(
                f"The storage did not answer within {limit:g} seconds.", "timeout"
            )
        except Exception as exc:  # whatever the driver raises: it cannot serve
            return self._record("The storage is unavailable.", repr(exc))
        return self._record(None, "")

    def _record(self, problem: str | None, detail: str) -> str | None:
        if problem is not None and self.problem is None:
            logger.warning("health: unavailable: %s (%s)", problem, detail)
        elif problem is None and self.problem is not None:
            logger.warning("health: the storage answers again")
        self.problem = problem
        return problem
