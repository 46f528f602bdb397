"""Filling a store fast, straight through the backend's connection: the storage layer makes
the schema and the user, then sessions and refresh tokens go in by the hundred thousand
(executemany by 100k rows a transaction through the standard sqlite3 module on SQLite, COPY
on PostgreSQL). Seeding through the HTTP API would take hours at 1M tokens.

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
CHAIN_TOKEN_COLUMNS = ("token_hash", "session_id", "retired_ms", "successor_hash")
CHAIN_STEP_S = 10  # a long session's rotations: one every 10 s up to now
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
        for low in range(start, stop, CHUNK):  # a chunk's rows at a time: 1M is a lot
            rows = _rows(user_id, prefix, low, min(stop, low + CHUNK), now, expires_at)
            await _copy_postgres(store.location, _tables(*rows))
        await _settle_postgres(store.location)
    else:
        rows = _rows(user_id, prefix, start, stop, now, expires_at)
        await asyncio.to_thread(_insert_sqlite, store.location, _tables(*rows))
    return time.perf_counter() - began


async def add_chains(
    store: Store, user_id: str, chains: int, rotations: int
) -> list[str]:
    """`chains` sessions, each rotated `rotations` times: that many retired tokens linked
    by `successor_hash`, as the server leaves them, retired one every CHAIN_STEP_S seconds
    up to now, then one current token. Returns the current tokens' plaintexts."""
    now = int(time.time())
    sessions, tokens, current = [], [], []
    for _ in range(chains):
        prefix, session_id = new_prefix(), uuid.uuid4().hex
        created = now - (rotations + 1) * CHAIN_STEP_S
        sessions.append((session_id, user_id, created, now + LIVE_TTL))
        digests = [_digest(token(prefix, i)) for i in range(rotations + 1)]
        for i in range(rotations):
            retired_at = created + (i + 1) * CHAIN_STEP_S
            tokens.append((digests[i], session_id, retired_at * 1000, digests[i + 1]))
        tokens.append((digests[rotations], session_id, None, None))
        current.append(token(prefix, rotations))
    tokens.sort()
    if store.backend == "postgres":
        await _copy_postgres(store.location, [("sessions", SESSION_COLUMNS, sessions)])
        for low in range(0, len(tokens), CHUNK):
            part = tokens[low : low + CHUNK]
            await _copy_postgres(
                store.location, [("refresh_tokens", CHAIN_TOKEN_COLUMNS, part)]
            )
        await _settle_postgres(store.location)
    else:
        tables = [
            ("sessions", SESSION_COLUMNS, sessions),
            ("refresh_tokens", CHAIN_TOKEN_COLUMNS, tokens),
        ]
        await asyncio.to_thread(_insert_sqlite, store.location, tables)
    return current


Table = tuple[str, tuple[str, ...], list[tuple]]


def _digest(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode()).digest()


def _rows(
    user_id: str, prefix: str, start: int, stop: int, now: int, expires_at: int
) -> tuple[list[tuple], list[tuple]]:
    """Session and token rows, sorted by key so that indexes are built in order."""
    digests = sorted(_digest(token(prefix, i)) for i in range(start, stop))
    sessions, tokens = [], []
    for digest in digests:
        session_id = digest[:16].hex()
        sessions.append((session_id, user_id, now, expires_at))
        tokens.append((digest, session_id))
    return sessions, tokens


def _tables(sessions: list[tuple], tokens: list[tuple]) -> list[Table]:
    return [
        ("sessions", SESSION_COLUMNS, sessions),
        ("refresh_tokens", TOKEN_COLUMNS, tokens),
    ]


def _insert_sqlite(path: str, tables: list[Table]) -> None:
    """Insert by CHUNK rows a transaction, through a connection of our own (the standard
    sqlite3 module: the storage layer made the schema, its internals are its own), then
    checkpoint and fsync so that the next measurement does not pay for this writeback."""
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    try:
        db.execute(f"PRAGMA cache_size = -{SEED_CACHE_KIB}")
        db.execute("PRAGMA synchronous = OFF")
        for table, columns, rows in tables:
            for low in range(0, len(rows), CHUNK):
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_insert_sql(table, columns), rows[low : low + CHUNK])
                db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    _fsync(path)


def _fsync(path: str) -> None:
    """Write the seeded pages out now: otherwise the kernel flushes hundreds of MB while
    the next measurement runs, and the server's checkpoints wait for it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


async def _copy_postgres(dsn: str, tables: list[Table]) -> None:
    """COPY the rows in, one transaction."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for table, columns, rows in tables:
                await conn.copy_records_to_table(table, records=rows, columns=columns)
    finally:
        await conn.close()


async def _settle_postgres(dsn: str) -> None:
    """Fresh statistics, and the seeding's writeback done before the next measurement."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE sessions; ANALYZE refresh_tokens")
        with contextlib.suppress(asyncpg.PostgresError):  # needs a superuser
            await conn.execute("CHECKPOINT")
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
