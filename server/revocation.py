"""Revoked session ids in memory, so the access-token check needs no database query.

An entry lives as long as an access token of that session could (access_ttl + leeway);
other instances' revocations arrive by polling storage every `tokens.revocation_poll`
seconds. Entries are merged, never replaced, so a poll that raced a local revocation
cannot drop it.
"""

from __future__ import annotations

from collections.abc import Iterable

from storage import Revocation

from . import clock


class RevocationSet:
    def __init__(self) -> None:
        self._until: dict[str, int] = {}

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._until

    def __len__(self) -> int:
        return len(self._until)

    def add(self, session_id: str, until: int) -> None:
        self._until[session_id] = max(until, self._until.get(session_id, 0))

    def merge(
        self, revocations: Iterable[Revocation], now: float | None = None
    ) -> None:
        """Add what storage knows and forget entries that can no longer matter."""
        for revocation in revocations:
            self.add(revocation.session_id, revocation.keep_until)
        now = clock.now() if now is None else now
        for session_id in [sid for sid, until in self._until.items() if until <= now]:
            del self._until[session_id]
