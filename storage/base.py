"""The storage interface. Every state change is one call, atomic in every backend:
handlers never read, decide, then write. Lookups return None; conflicts raise."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from .models import (
    Counter,
    NewSession,
    PurgeResult,
    RefreshRequest,
    RefreshResult,
    Revocation,
    RevokedSession,
    RevokeReason,
    SessionInfo,
    User,
    UserUpdate,
)

DEFAULT_REUSE_WINDOW = 86400


class Storage(ABC):
    """Users, sessions, refresh tokens, revocations and counters.

    Text arguments may hold any character, NUL included: a lookup of a value no record
    can hold finds nothing, never raises.

    `revocation_ttl` is how long (seconds) a revoked session id is kept for the access
    token check: past that, no access token of the session can still be valid.
    `reuse_window` is how long (seconds) a retired refresh token is kept for reuse
    detection; the purge deletes it afterwards, and presenting it then is UNKNOWN.

    Every method raises StorageUnavailable (never a driver's error) while the database
    cannot be reached, and works again by itself once it can.

    `write_transactions` counts the write transactions (or, in memory, the mutations)
    this instance made: a request that changes nothing must leave it unchanged.
    """

    def __init__(
        self, revocation_ttl: int, *, reuse_window: int = DEFAULT_REUSE_WINDOW
    ) -> None:
        self.revocation_ttl = revocation_ttl
        self.reuse_window = reuse_window
        self.write_transactions = 0

    async def open(self) -> None:
        """Connect and create or upgrade the schema. Raises SchemaTooNew."""

    async def close(self) -> None:
        """Stop watching, release connections; the storage is not used after this."""

    @abstractmethod
    async def ping(self) -> None:
        """One trivial round trip to the database; raises StorageUnavailable."""

    # users

    @abstractmethod
    async def create_user(self, user: User) -> None:
        """Insert a user. Raises UsernameTaken or EmailTaken (username checked first);
        usernames and emails are unique by their canonical keys (storage.identity)."""

    @abstractmethod
    async def get_user(self, user_id: str) -> User | None:
        """The user with this id, or None."""

    @abstractmethod
    async def find_user(
        self, *, username: str | None = None, email: str | None = None
    ) -> User | None:
        """The user whose username (or email) has the canonical key of the text given,
        or None."""

    @abstractmethod
    async def list_users(
        self, limit: int, after: tuple[int, str] | None, query: str | None
    ) -> list[User]:
        """At most `limit` users ordered by (created_at, id), starting after the
        (created_at, id) `after` (exclusive; None: from the first). `query` keeps the
        users whose username or email contains it, without regard to case (a literal:
        `%`, `_` and backslash match themselves). Paging with the last user's
        (created_at, id) visits every user that existed throughout exactly once, however
        many users are created meanwhile."""

    @abstractmethod
    async def update_user(
        self,
        user_id: str,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        now: int,
    ) -> UserUpdate | None:
        """Set the roles and/or the disabled flag (None: unchanged), atomically with the
        revocations the change calls for: disabling revokes every live session of the
        user (USER_DISABLED); taking any role away revokes them all (ROLE_REMOVED);
        adding roles revokes nothing. None if there is no such user. Raises LastAdmin
        when no enabled admin would remain; two concurrent changes cannot both pass
        that check."""

    @abstractmethod
    async def change_password(
        self,
        user_id: str,
        current_hash: str,
        password_hash: str,
        keep_session_id: str | None,
        now: int,
    ) -> list[str] | None:
        """Replace the password hash `current_hash` (the one the caller verified) by
        `password_hash` and revoke every other live session of the user, in one
        transaction; the revoked session ids. A compare-and-swap: None, and nothing
        written, when there is no such user or its hash is no longer `current_hash`, so
        a check made before a concurrent change never overwrites its newer hash."""

    @abstractmethod
    async def delete_user(self, user_id: str, now: int) -> list[str] | None:
        """Delete a user and revoke its live sessions (kept, revoked, until they expire, so
        their refresh tokens answer `revoked`). None if there was no such user. Raises
        LastAdmin when the user is the only enabled admin."""

    # sessions and refresh tokens

    @abstractmethod
    async def create_session(self, session: NewSession, password_hash: str) -> bool:
        """Start a session with its first refresh token (stored by hash only), in one
        transaction, only if the user exists, is not disabled and its password hash is
        still `password_hash` (the one the sign-in verified). Otherwise nothing is
        written and the answer is False: a sign-in racing a password change, a deletion
        or a disable must not leave a live session behind."""

    @abstractmethod
    async def use_refresh_token(self, request: RefreshRequest) -> RefreshResult:
        """Look up, check and (with a successor hash) rotate a refresh token, atomically.

        - unknown hash: UNKNOWN.
        - revoked session: REUSED if it was revoked for reuse, else REVOKED.
        - session expired: EXPIRED, and the session with its tokens is deleted.
        - user gone: REVOKED (the session is revoked, USER_DELETED).
        - user disabled: REVOKED (the session is revoked, USER_DISABLED).
        - current token, no successor hash (rotation off): VALID.
        - current token: ROTATED; the successor becomes current, the token is retired
          (time kept in milliseconds), the session's expiry becomes
          `request.expires_at`.
        - retired token: REPLAYED when `reuse_interval > 0` and it was retired at most
          `reuse_interval` seconds before `request.now`, or (not `strict`) while its
          successor was never presented; otherwise REUSED and the session is revoked.
          With rotation off (no successor hash) a retired token is always REUSED.
          Of many concurrent calls on one current token exactly one is ROTATED and the
          others see it retired.

        Every success records `request.now` as the session's last use. UNKNOWN and the
        answers for revoked sessions are read without a write lock and write nothing.
        `user` is filled whenever the user exists, `session_id` whenever the token is
        known, `expires_at` on success."""

    @abstractmethod
    async def revoke_session(
        self, token_hash: bytes, reason: RevokeReason, now: int
    ) -> RevokedSession | None:
        """Revoke the session owning this refresh token. None if the token is unknown;
        `was_live` False if the session was already revoked. Neither case writes or
        takes a write lock."""

    @abstractmethod
    async def list_sessions(self, user_id: str, now: int) -> list[SessionInfo]:
        """The user's live sessions (not revoked, not expired at `now`), newest first
        (created_at descending, then id descending)."""

    @abstractmethod
    async def revoke_user_session(
        self, user_id: str, session_id: str, reason: RevokeReason, now: int
    ) -> bool:
        """Revoke one live session of this user. False, and nothing written, for an
        unknown id, another user's session or a session that is not live."""

    @abstractmethod
    async def revoke_other_sessions(
        self, user_id: str, keep_session_id: str | None, reason: RevokeReason, now: int
    ) -> list[str]:
        """Revoke every live session (not revoked, not expired: those the user sees
        listed) of the user but `keep_session_id`; their ids."""

    # revocations

    @abstractmethod
    async def revocations_since(
        self, cursor: int | None, now: int
    ) -> tuple[list[Revocation], int]:
        """The live revocations (revoked session ids whose access tokens may still be
        alive at `now`) recorded after `cursor` (None: all of them), and the cursor to
        pass next time. Each revocation is
        returned by exactly one call of a chain of cursors, however transactions
        commit; the read touches only the new rows."""

    async def watch_revocations(self, notify: Callable[[], None]) -> bool:
        """Call `notify()` (on the event loop) soon after any instance sharing the
        database records a revocation, and after reconnecting, until `close()`; then
        `revocations_since` has news. False when the backend cannot push (poll then)."""
        return False

    # counters (rate limits)

    @abstractmethod
    async def hit_counter(self, key: str, window: int, now: int) -> Counter:
        """Add one to a fixed-window counter and return it; a counter whose window has
        ended starts again at 1 with a window ending at now + window."""

    @abstractmethod
    async def refund_counter(self, key: str, now: int) -> None:
        """Take one back from a counter whose window has not ended (never below zero);
        nothing for an absent or ended counter."""

    @abstractmethod
    async def read_counter(self, key: str, now: int) -> Counter:
        """The counter's value in its current window (0 when none or ended)."""

    @abstractmethod
    async def delete_counter(self, key: str) -> None:
        """Forget a counter."""

    # maintenance

    @abstractmethod
    async def purge_expired(self, now: int, batch_size: int) -> PurgeResult:
        """Delete, in short transactions of at most `batch_size` rows each: expired
        sessions with their refresh tokens, refresh tokens retired more than
        `reuse_window` seconds before `now`, ended revocations and ended counters."""

    @abstractmethod
    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        """The secret stored under `name`; stores `candidate` first if there is none. Every
        process sharing the database gets the same value."""
