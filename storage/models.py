"""Frozen records passed across the storage interface. Times are integer epoch seconds,
except `RefreshRequest.now` (float: the reuse interval is exact to the millisecond)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class User:
    id: str
    username: str
    email: str
    password_hash: str
    roles: tuple[str, ...]
    created_at: int
    disabled: bool = False
    display_name: str | None = None  # the free-text name some seed dialects ask for


class RevokeReason(StrEnum):
    SIGNOUT = "signout"
    REUSE = "reuse"
    PASSWORD_CHANGE = "password_change"
    USER_DELETED = "user_deleted"
    SESSION_REVOKED = "session_revoked"  # the user ended one of its sessions
    OTHERS_REVOKED = "others_revoked"  # the user ended all its other sessions
    USER_DISABLED = "user_disabled"
    ROLE_REMOVED = "role_removed"


@dataclass(frozen=True)
class NewSession:
    id: str
    user_id: str
    token_hash: bytes
    created_at: int
    expires_at: int
    user_agent: str | None = None
    ip: str | None = None


@dataclass(frozen=True)
class SessionInfo:
    """A live session as its user sees it. `last_used_at` is the sign-in or the latest
    successful refresh."""

    id: str
    user_id: str
    created_at: int
    last_used_at: int
    expires_at: int
    user_agent: str | None
    ip: str | None


class RefreshOutcome(StrEnum):
    """What presenting a refresh token came to."""

    ROTATED = "rotated"  # the presented token was current; its successor is now current
    REPLAYED = "replayed"  # a retired token whose successor may still be returned
    VALID = "valid"  # rotation off: the presented token stays current
    UNKNOWN = "unknown"
    EXPIRED = "expired"  # the session had expired; it is deleted now
    REVOKED = "revoked"  # signed out, password changed, user deleted or disabled...
    REUSED = "reused"  # reuse detected now or earlier; the session is revoked

    @property
    def succeeded(self) -> bool:
        return self in (
            RefreshOutcome.ROTATED,
            RefreshOutcome.REPLAYED,
            RefreshOutcome.VALID,
        )


@dataclass(frozen=True)
class RefreshRequest:
    """One use of a refresh token. `successor_hash` is None when rotation is off.

    `now` has sub-second precision: a retired token is within the reuse interval iff
    `reuse_interval > 0 and now - retired_at <= reuse_interval`, to the millisecond."""

    token_hash: bytes
    successor_hash: bytes | None
    now: float
    expires_at: int  # the session's new expiry when it rotates
    reuse_interval: int
    strict: bool


@dataclass(frozen=True)
class RefreshResult:
    """`user` is filled whenever the session's user still exists (failures included),
    `session_id` whenever the token was known; `expires_at` only on success."""

    outcome: RefreshOutcome
    user: User | None = None
    session_id: str | None = None
    expires_at: int | None = None


@dataclass(frozen=True)
class RevokedSession:
    """The session a refresh token belongs to; `was_live` is False when it had already
    been revoked (nothing was written then)."""

    session_id: str
    user_id: str
    was_live: bool


@dataclass(frozen=True)
class UserUpdate:
    """A user as `update_user` left it, and the sessions that change revoked."""

    user: User
    revoked: list[str]


@dataclass(frozen=True)
class Revocation:
    session_id: str
    keep_until: int


@dataclass(frozen=True)
class Counter:
    count: int
    reset_at: int


@dataclass(frozen=True)
class PurgeResult:
    """What one purge batch deleted; a full batch means more may remain. `tokens` counts
    the tokens of expired sessions and the retired tokens past the reuse window."""

    sessions: int = 0
    tokens: int = 0
    other: int = 0

    def __add__(self, other: PurgeResult) -> PurgeResult:
        return PurgeResult(
            self.sessions + other.sessions,
            self.tokens + other.tokens,
            self.other + other.other,
        )
