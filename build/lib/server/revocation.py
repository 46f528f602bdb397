"""Revoked session ids in memory, so the access-token check needs no database query.

An entry lives as long as an access token of that session could (access_ttl + leeway);
other instances' revocations arrive from storage (a poll every `tokens.revocation_poll`
seconds, or a push where the database offers one). Entries are merged, never replaced, so
a poll that raced a local revocation cannot drop it. Expired entries leave through a heap
ordered by expiry: forgetting them costs what is forgotten, not a scan of the whole set.

Long-lived connections (WebSockets) wait on `revoked(session_id)` to end with their session.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable

from storage import Revocation

from . import clock


class RevocationSet:
    def __init__(self) -> None:
        self._until: dict[str, int] = {}
        self._expiry: list[tuple[int, str]] = []  # (until, session id), a min-heap
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._until

    def __len__(self) -> int:
        return len(self._until)

    def add(self, session_id: str, until: int) -> None:
        known = self._until.get(session_id)
        if known is not None and known >= until:
            return
        self._until[session_id] = until
        heapq.heappush(self._expiry, (until, session_id))
        for event in self._waiters.pop(session_id, ()):
            event.set()

    def merge(
        self, revocations: Iterable[Revocation], now: float | None = None
    ) -> None:
        """Add what storage knows and forget entries that can no longer matter."""
        for revocation in revocations:
            self.add(revocation.session_id, revocation.keep_until)
        self.forget_expired(clock.now() if now is None else now)

    def forget_expired(self, now: float) -> None:
        expiry, until = self._expiry, self._until
        while expiry and expiry[0][0] <= now:
            ended, session_id = heapq.heappop(expiry)
            if until.get(session_id) == ended:  # not extended by a later revocation
                del until[session_id]

    def revoked(self, session_id: str) -> asyncio.Event:
        """An event set when `session_id` is revoked (at once if it already is). Call
        `forget_waiter` when no longer interested."""
        event = asyncio.Event()
        if session_id in self._until:
            event.set()
        else:
            self._waiters.setdefault(session_id, set()).add(event)
        return event

    def forget_waiter(self, session_id: str, event: asyncio.Event) -> None:
        waiters = self._waiters.get(session_id)
        if waiters is not None:
            waiters.discard(event)
            if not waiters:
                del self._waiters[session_id]
