"""Fixtures and builders of the storage contract tests (tests/test_storage*.py).

Times are explicit numbers: nothing sleeps. Revocations are kept 60 s (TTL), retired
tokens 1000 s (REUSE_WINDOW), refresh requests allow a 10 s reuse interval unless a test
says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from storage import (
    NewSession,
    RefreshOutcome,
    RefreshRequest,
    RefreshResult,
    Revocation,
    Storage,
    User,
)
from tests.backends import BACKENDS, open_test_storage, postgres_schema_dsn

SQL_BACKENDS = [param for param in BACKENDS if param.values[0] != "memory"]
POSTGRES_ONLY = [param for param in BACKENDS if param.values[0] == "postgres"]
TTL = 60
REUSE_WINDOW = 1000
CREATED = 1_700_000_000

ROTATED = RefreshOutcome.ROTATED
REPLAYED = RefreshOutcome.REPLAYED
VALID = RefreshOutcome.VALID
UNKNOWN = RefreshOutcome.UNKNOWN
EXPIRED = RefreshOutcome.EXPIRED
REVOKED = RefreshOutcome.REVOKED
REUSED = RefreshOutcome.REUSED


@pytest.fixture(params=BACKENDS, name="storage")
async def storage_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Storage]:
    async with open_test_storage(
        request.param, tmp_path, revocation_ttl=TTL, reuse_window=REUSE_WINDOW
    ) as store:
        yield store


@pytest.fixture(params=SQL_BACKENDS, name="sql_database")
async def sql_database_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    """(kind, location) of an empty SQL database, for tests that open several storages on
    it the way several processes would."""
    if request.param == "postgres":
        async with postgres_schema_dsn() as dsn:
            yield "postgres", dsn
    else:
        yield "sqlite", str(tmp_path / "auth.db")


# builders


def fullwidth(text: str) -> str:
    """ASCII letters as their full-width look-alikes (U+FF01 on)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def token(name: str) -> bytes:
    """A stored refresh-token hash, 32 bytes like the server's."""
    return hashlib.sha256(name.encode()).digest()


T1, T2, T3 = token("t1"), token("t2"), token("t3")


def make_user(
    user_id: str = "u1",
    username: str = "alice",
    email: str = "alice@example.com",
    roles: tuple[str, ...] = ("user",),
    created_at: int = CREATED,
) -> User:
    return User(user_id, username, email, f"hash-of-{user_id}", roles, created_at)


def refresh(
    token_hash: bytes,
    successor: bytes | None,
    now: float,
    *,
    expires_at: int = 2000,
    strict: bool = False,
    interval: int = 10,
) -> RefreshRequest:
    return RefreshRequest(token_hash, successor, now, expires_at, interval, strict)


async def start_session(
    storage: Storage,
    sid: str,
    token_hash: bytes,
    user_id: str = "u1",
    expires_at: int = 1000,
    created_at: int = 0,
    device: tuple[str | None, str | None] = (None, None),
) -> None:
    """Start a session of an existing user, with the password hash make_user gave it."""
    session = NewSession(sid, user_id, token_hash, created_at, expires_at, *device)
    assert await storage.create_session(session, f"hash-of-{user_id}")


async def user_with_session(storage: Storage) -> User:
    """User u1 with session s1 (current token T1, expiring at 1000)."""
    user = make_user()
    await storage.create_user(user)
    await start_session(storage, "s1", T1)
    return user


async def rotated(storage: Storage, user: User, request: RefreshRequest) -> None:
    """Rotate and check that it did: setup steps of the later tests."""
    result = await storage.use_refresh_token(request)
    sid = result.session_id
    assert result == RefreshResult(ROTATED, user, sid, request.expires_at)


def failed(
    outcome: RefreshOutcome, user: User | None, session_id: str = "s1"
) -> RefreshResult:
    """A refused token of a known session: the user (if it still exists), the session."""
    return RefreshResult(outcome, user, session_id)


async def live_revocations(store: Storage, now: int) -> list[Revocation]:
    """Every revocation live at `now`, in the order recorded: a poll's first read."""
    return (await store.revocations_since(None, now))[0]


def by_id(revocations: list[Revocation]) -> list[Revocation]:
    return sorted(revocations, key=lambda r: r.session_id)


# raw access, for states the interface cannot (or must not) produce


async def run_sql(store: Storage, template: str, *args: object) -> list[tuple]:
    """SQL (parameters written $1, $2...) on a SQL backend's database, outside the
    storage's transactions: on SQLite through a connection of its own."""
    from storage.sql import SQLStorage
    from storage.sqlite import SQLiteStorage

    assert isinstance(store, SQLStorage)
    sql = store.dialect.sql(template)
    if isinstance(store, SQLiteStorage):
        return await asyncio.to_thread(_sqlite_rows, store.path, sql, args)
    from storage.postgres import PostgresStorage

    assert isinstance(store, PostgresStorage)
    return [tuple(row) for row in await store.pool.fetch(sql, *args)]


def _sqlite_rows(path: str, sql: str, args: tuple) -> list[tuple]:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def tamper_user(store: Storage, user_id: str, *, delete: bool = False) -> None:
    """Delete a user's row, or mark it disabled, without touching its sessions: the
    states a refresh must still handle safely."""
    from storage.memory import MemoryStorage

    if isinstance(store, MemoryStorage):
        if delete:
            del store._users[user_id]
        else:
            store._users[user_id] = replace(store._users[user_id], disabled=True)
        return
    if delete:
        await run_sql(store, "DELETE FROM users WHERE id = $1", user_id)
    else:
        await run_sql(store, "UPDATE users SET disabled = TRUE WHERE id = $1", user_id)


TABLES = ("sessions", "refresh_tokens", "revocations", "counters")


async def table_sizes(store: Storage) -> dict[str, int]:
    """How many rows each table holds: what a purge left, counted on any backend."""
    from storage.memory import MemoryStorage

    if isinstance(store, MemoryStorage):
        held = (store._sessions, store._tokens, store._revocations, store._counters)
        return {table: len(rows) for table, rows in zip(TABLES, held, strict=True)}
    return {
        table: (await run_sql(store, f"SELECT COUNT(*) FROM {table}"))[0][0]
        for table in TABLES
    }
