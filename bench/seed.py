"""Filling a store fast, straight through the backend's connection: the storage layer makes
the schema and the user, then sessions and refresh tokens go in by the hundred thousand
(executemany in one transaction on SQLite, COPY on PostgreSQL). Seeding through the HTTP
API would take hours at 1M tokens.

Refresh tokens have known plaintexts, `token(prefix, i)`; the store holds what the server
would, sha256(token) as raw bytes (server/tokens.py RefreshTokens.digest). Each token has a
session of its own, so each can be rotated once by a request that presents it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from server.passwords import PasswordHasher
from server.settings import PasswordSettings
from storage import Storage, User

USERNAME = "benchuser"
EMAIL = "benchuser@example.com"
PASSWORD = "correct-horse-battery-staple-42"
CHUNK = 100_000
LIVE_TTL = 30 * 86400
SESSION_COLUMNS = ("id", "user_id", "created_at", "expires_at")
TOKEN_COLUMNS = ("token_hash", "session_id")
SEED_CACHE_KIB = 262_144  # SQLite page cache while seeding: index pages stay in memory


@dataclass(frozen=True)
class Store:
    """A database to seed: `location` is the SQLite path or the PostgreSQL DSN."""

    backend: str
    location: str


def new_prefix() -> str:
    """A random token prefix, so tokens of different seedings never collide."""
    return secrets.token_urlsafe(24)


def token(prefix: str, index: int) -> str:
    """The plaintext of the index-th seeded refresh token (44 URL-safe characters)."""
    return f"{prefix}{index:012d}"


def write_tokens(path: Path, prefix: str, indices: Iterable[int]) -> Path:
    """A token list for the load generator, one plaintext a line."""
    path.write_text("".join(token(prefix, i) + "\n" for i in indices))
    return path


def open_storage(store: Store) -> Storage:
    if store.backend == "postgres":
        from storage.postgres import PostgresStorage

        return PostgresStorage(store.location, 60, pool_size=2)
    from storage.sqlite import SQLiteStorage

    return SQLiteStorage(store.location, 60)


async def create_user(store: Store) -> str:
    """Make the schema (the backend's migrations) and the bench user; its id. The hash is
    bcrypt at cost 4: nothing times sign-ins against a seeded store."""
    hasher = PasswordHasher(PasswordSettings(bcrypt_rounds=4, hash_workers=1))
    try:
        password_hash = await hasher.hash(PASSWORD)
    finally:
        hasher.close()
    user = User(
        uuid.uuid4().hex, USERNAME, EMAIL, password_hash, ("user",), int(time.time())
    )
    storage = open_storage(store)
    await storage.open()
    try:
        await storage.create_user(user)
    finally:
        await storage.close()
    return user.id


async def add_sessions(
    store: Store,
    user_id: str,
    prefix: str,
    start: int,
    stop: int,
    *,
    expired: bool = False,
) -> float:
    """Sessions `start`..`stop`-1, one live refresh token each (expired ones: both past their
    expiry). Returns the seconds it took."""
    began = time.perf_counter()
    now = int(time.time())
    expires_at = now - 3600 if expired else now + LIVE_TTL
    if store.backend == "postgres":
        await _copy_postgres(
            store.location, user_id, prefix, start, stop, now, expires_at
        )
    else:
        await _insert_sqlite(store, user_id, prefix, start, stop, now, expires_at)
    return time.perf_counter() - began


def _rows(
    user_id: str, prefix: str, start: int, stop: int, now: int, expires_at: int
) -> tuple[list[tuple], list[tuple]]:
    """Session and token rows, sorted by key so that indexes are built in order."""
    digests = sorted(
        hashlib.sha256(token(prefix, i).encode()).digest() for i in range(start, stop)
    )
    sessions, tokens = [], []
    for digest in digests:
        session_id = digest[:16].hex()
        sessions.append((session_id, user_id, now, expires_at))
        tokens.append((digest, session_id))
    return sessions, tokens


async def _insert_sqlite(
    store: Store,
    user_id: str,
    prefix: str,
    start: int,
    stop: int,
    now: int,
    expires_at: int,
) -> None:
    storage = open_storage(store)  # makes the schema
    await storage.open()
    await storage.close()
    sessions, tokens = _rows(user_id, prefix, start, stop, now, expires_at)
    await asyncio.to_thread(_copy_sqlite, store.location, sessions, tokens)
    await asyncio.to_thread(_fsync, store.location)


def _copy_sqlite(path: str, sessions: list[tuple], tokens: list[tuple]) -> None:
    """Rows in by executemany, CHUNK to a transaction, on a connection of its own."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        db.execute(f"PRAGMA cache_size = -{SEED_CACHE_KIB}")
        db.execute("PRAGMA synchronous = OFF")
        for low in range(0, len(sessions), CHUNK):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                _insert_sql("sessions", SESSION_COLUMNS), sessions[low : low + CHUNK]
            )
            db.executemany(
                _insert_sql("refresh_tokens", TOKEN_COLUMNS), tokens[low : low + CHUNK]
            )
            db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


def _fsync(path: str) -> None:
    """Write the seeded pages out now: otherwise the kernel flushes hundreds of MB while
    the next measurement runs, and the server's checkpoints wait for it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


async def _copy_postgres(
    dsn: str,
    user_id: str,
    prefix: str,
    start: int,
    stop: int,
    now: int,
    expires_at: int,
) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for low in range(start, stop, CHUNK):
            sessions, tokens = _rows(
                user_id, prefix, low, min(stop, low + CHUNK), now, expires_at
            )
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "sessions", records=sessions, columns=SESSION_COLUMNS
                )
                await conn.copy_records_to_table(
                    "refresh_tokens", records=tokens, columns=TOKEN_COLUMNS
                )
        await conn.execute("ANALYZE sessions; ANALYZE refresh_tokens")
        with contextlib.suppress(asyncpg.PostgresError):  # needs a superuser
            await conn.execute(
                "CHECKPOINT"
            )  # not in the middle of the next measurement
    finally:
        await conn.close()


def with_search_path(dsn: str, schema: str) -> str:
    """The DSN with `search_path=<schema>` (asyncpg sends unknown query parameters as
    server settings), replacing any search_path it had."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextlib.contextmanager
def postgres_schema(dsn: str) -> Iterator[str]:
    """A fresh schema `bench_<hex>` of the DSN's database, dropped afterwards (also on
    Ctrl-C); yields a DSN confined to it."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(dsn, f"CREATE SCHEMA {schema}"))
    try:
        yield with_search_path(dsn, schema)
    finally:
        asyncio.run(_execute(dsn, f"DROP SCHEMA {schema} CASCADE"))


async def _execute(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
