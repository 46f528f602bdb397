"""Storage: the interface, its records and errors, and `create_storage` picking a
backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Storage
from .errors import (
    EmailTaken,
    LastAdmin,
    SchemaTooNew,
    StorageError,
    StorageUnavailable,
    UsernameTaken,
)
from .identity import canonical_email, email_key, username_key
from .models import (
    Counter,
    NewSession,
    PurgeResult,
    RefreshOutcome,
    RefreshRequest,
    RefreshResult,
    Revocation,
    RevokedSession,
    RevokeReason,
    SessionInfo,
    User,
    UserUpdate,
)

if TYPE_CHECKING:
    from server.settings import Settings

__all__ = [
    "Counter",
    "EmailTaken",
    "LastAdmin",
    "NewSession",
    "PurgeResult",
    "RefreshOutcome",
    "RefreshRequest",
    "RefreshResult",
    "Revocation",
    "RevokeReason",
    "RevokedSession",
    "SchemaTooNew",
    "SessionInfo",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "User",
    "UserUpdate",
    "UsernameTaken",
    "canonical_email",
    "create_storage",
    "email_key",
    "username_key",
]


def create_storage(settings: Settings) -> Storage:
    """The configured backend, not yet opened; drivers are imported only when chosen."""
    tokens = settings.tokens
    ttl = tokens.revocation_ttl
    window = tokens.reuse_window
    backend = settings.storage.backend
    if backend == "memory":
        from .memory import MemoryStorage

        return MemoryStorage(ttl, reuse_window=window)
    if backend == "postgres":
        from .postgres import PostgresStorage

        return PostgresStorage(
            settings.storage.dsn,
            ttl,
            reuse_window=window,
            pool_size=settings.storage.pool_size,
            command_timeout=settings.storage.command_timeout,
            acquire_timeout=settings.storage.acquire_timeout,
        )
    from .sqlite import SQLiteStorage

    return SQLiteStorage(settings.storage.path, ttl, reuse_window=window)
