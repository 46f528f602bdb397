"""Frozen records passed across the storage interface. Times are integer epoch seconds."""

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


class RevokeReason(StrEnum):
    SIGNOUT = "signout"
    REUSE = "reuse"
    PASSWORD_CHANGE = "password_change"
    USER_DELETED = "user_deleted"


@dataclass(frozen=True)
class NewSession:
    id: str
    user_id: str
    token_hash: bytes
    created_at: int
    expires_at: int


class RefreshOutcome(StrEnum):
    """What presenting a refresh token came to."""

    ROTATED = "rotated"  # the presented token was current; its successor is now current
    REPLAYED = "replayed"  # a retired token whose successor may still be returned
    VALID = "valid"  # rotation off: the presented token stays current
    UNKNOWN = "unknown"
    EXPIRED = "expired"  # the session had expired; it is deleted now
    REVOKED = "revoked"  # signed out, password changed, or user deleted
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
    """One use of a refresh token. `successor_hash` is None when rotation is off."""

    token_hash: bytes
    successor_hash: bytes | None
    now: int
    expires_at: int  # the session's new expiry when it rotates
    reuse_interval: int
    strict: bool


@dataclass(frozen=True)
class RefreshResult:
    outcome: RefreshOutcome
    user: User | None = None
    session_id: str | None = None
    expires_at: int | None = None


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
    """What one purge batch deleted; a full batch means more may remain."""

    sessions: int = 0
    tokens: int = 0
    other: int = 0

    def __add__(self, other: PurgeResult) -> PurgeResult:
        return PurgeResult(
            self.sessions + other.sessions,
            self.tokens + other.tokens,
            self.other + other.other,
        )
