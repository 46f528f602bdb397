"""Storage: the interface, its records and errors, and `open_storage` picking a backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Storage
from .errors import (
    EmailTaken,
    SchemaTooNew,
    StorageError,
    StorageUnavailable,
    UsernameTaken,
)
from .models import (
    Counter,
    NewSession,
    PurgeResult,
    RefreshOutcome,
    RefreshRequest,
    RefreshResult,
    Revocation,
    RevokeReason,
    User,
)

if TYPE_CHECKING:
    from server.settings import Settings

__all__ = [
    "Counter",
    "EmailTaken",
    "NewSession",
    "PurgeResult",
    "RefreshOutcome",
    "RefreshRequest",
    "RefreshResult",
    "Revocation",
    "RevokeReason",
    "SchemaTooNew",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "User",
    "UsernameTaken",
    "create_storage",
]


def create_storage(settings: Settings) -> Storage:
    """The configured backend, not yet opened; drivers are imported only when chosen."""
    backend, ttl = settings.storage.backend, settings.tokens.revocation_ttl
    if backend == "memory":
        from .memory import MemoryStorage

        return MemoryStorage(ttl)
    if backend == "postgres":
        from .postgres import PostgresStorage

        return PostgresStorage(
            settings.storage.dsn, ttl, pool_size=settings.storage.pool_size
        )
    from .sqlite import SQLiteStorage

    return SQLiteStorage(settings.storage.path, ttl)
