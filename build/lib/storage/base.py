"""The storage interface. Every state change is one call, atomic in every backend:
handlers never read, decide, then write. Lookups return None; conflicts raise."""

from __future__ import annotations

from abc import ABC, abstractmethod

from .models import (
    Counter,
    NewSession,
    PurgeResult,
    RefreshRequest,
    RefreshResult,
    Revocation,
    RevokeReason,
    User,
)


class Storage(ABC):
    """Users, sessions, refresh tokens, revocations and counters.

    Text arguments may hold any character, NUL included: a lookup of a value no record
    can hold finds nothing, never raises.

    `revocation_ttl` is how long (seconds) a revoked session id is kept for the access
    token check: past that, no access token of the session can still be valid.
    """

    def __init__(self, revocation_ttl: int) -> None:
        self.revocation_ttl = revocation_ttl

    async def open(self) -> None:
        """Connect and create or upgrade the schema. Raises SchemaTooNew."""

    async def close(self) -> None:
        """Release connections; the storage is not used after this."""

    # users

    @abstractmethod
    async def create_user(self, user: User) -> None:
        """Insert a user. Raises UsernameTaken or EmailTaken (username checked first);
        usernames and emails are unique without regard to case."""

    @abstractmethod
    async def get_user(self, user_id: str) -> User | None:
        """The user with this id, or None."""

    @abstractmethod
    async def find_user(
        self, *, username: str | None = None, email: str | None = None
    ) -> User | None:
        """The user with this username or email (case-insensitive), or None."""

    @abstractmethod
    async def change_password(
        self, user_id: str, password_hash: str, keep_session_id: str | None, now: int
    ) -> list[str]:
        """Set a new password hash and revoke every other live session of the user, in one
        transaction. Returns the revoked session ids."""

    @abstractmethod
    async def delete_user(self, user_id: str, now: int) -> list[str] | None:
        """Delete a user and revoke its live sessions (kept, revoked, until they expire, so
        their refresh tokens answer `revoked`). None if there was no such user."""

    # sessions and refresh tokens

    @abstractmethod
    async def create_session(self, session: NewSession) -> None:
        """Start a session with its first refresh token (stored by hash only)."""

    @abstractmethod
    async def use_refresh_token(self, request: RefreshRequest) -> RefreshResult:
        """Look up, check and (with a successor hash) rotate a refresh token, atomically.

        - unknown hash: UNKNOWN.
        - revoked session: REUSED if it was revoked for reuse, else REVOKED.
        - session expired: EXPIRED, and the session with its tokens is deleted.
        - user gone: REVOKED (the session is revoked).
        - no successor hash (rotation off): VALID.
        - current token: ROTATED; the successor becomes current, the token is retired,
          the session's expiry becomes `request.expires_at`.
        - retired token: REPLAYED when retired at most `reuse_interval` seconds ago, or
          (not `strict`) while its successor was never presented; otherwise REUSED and
          the session is revoked. Of many concurrent calls on one current token exactly
          one is ROTATED and the others see it retired.
        """

    @abstractmethod
    async def revoke_session(
        self, token_hash: bytes, reason: RevokeReason, now: int
    ) -> str | None:
        """Revoke the session owning this refresh token; the session id, or None if the
        token is unknown. Revoking a revoked session changes nothing (returns its id)."""

    @abstractmethod
    async def live_revocations(self, now: int) -> list[Revocation]:
        """Revoked session ids whose access tokens may still be alive."""

    # counters (rate limits)

    @abstractmethod
    async def hit_counter(self, key: str, window: int, now: int) -> Counter:
        """Add one to a fixed-window counter and return it; a counter whose window has
        ended starts again at 1 with a window ending at now + window."""

    @abstractmethod
    async def read_counter(self, key: str, now: int) -> Counter:
        """The counter's value in its current window (0 when none or ended)."""

    @abstractmethod
    async def delete_counter(self, key: str) -> None:
        """Forget a counter."""

    # maintenance

    @abstractmethod
    async def purge_expired(self, now: int, batch_size: int) -> PurgeResult:
        """Delete at most `batch_size` expired sessions (with their refresh tokens) and at
        most `batch_size` ended revocations and counters, in short transactions."""

    @abstractmethod
    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        """The secret stored under `name`; stores `candidate` first if there is none. Every
        process sharing the database gets the same value."""
