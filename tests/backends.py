"""Test helpers shared by the storage contract tests and the HTTP tests: the backends to run
against, and opened storages that no other test run can see into."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from storage import Storage

POSTGRES_DSN = os.environ.get("AUTH_TEST_POSTGRES_DSN", "")

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=pytest.mark.skipif(
            not POSTGRES_DSN,
            reason="AUTH_TEST_POSTGRES_DSN is not set: PostgreSQL tests skipped",
        ),
    ),
]


def with_search_path(dsn: str, schema: str) -> str:
    """The DSN with `search_path=<schema>` in its query (asyncpg sends unknown query
    parameters as server settings), replacing any search_path it had."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


@asynccontextmanager
async def postgres_schema_dsn() -> AsyncIterator[str]:
    """A DSN confined to a fresh schema of POSTGRES_DSN's database, dropped afterwards, so
    that test runs (and tests) never see each other's rows."""
    import asyncpg

    schema = f"test_{uuid.uuid4().hex}"
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield with_search_path(POSTGRES_DSN, schema)
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


def make_storage(
    kind: str, location: str, revocation_ttl: int = 60, reuse_window: int = 86400
) -> Storage:
    """An unopened storage of `kind`; `location` is the SQLite path or the PostgreSQL DSN
    (ignored for memory). Two of them on one location share a database, like two processes."""
    if kind == "memory":
        from storage.memory import MemoryStorage

        return MemoryStorage(revocation_ttl, reuse_window=reuse_window)
    if kind == "sqlite":
        from storage.sqlite import SQLiteStorage

        return SQLiteStorage(location, revocation_ttl, reuse_window=reuse_window)
    if kind == "postgres":
        from storage.postgres import PostgresStorage

        return PostgresStorage(
            location, revocation_ttl, reuse_window=reuse_window, pool_size=10
        )
    raise ValueError(f"unknown storage backend {kind!r}")


@asynccontextmanager
async def opened(storage: Storage) -> AsyncIterator[Storage]:
    """`storage`, opened, and closed afterwards (also when open() itself fails)."""
    try:
        await storage.open()
        yield storage
    finally:
        await storage.close()


@asynccontextmanager
async def open_test_storage(
    kind: str, tmp_path: Path, revocation_ttl: int = 60, reuse_window: int = 86400
) -> AsyncIterator[Storage]:
    """An opened, empty storage of `kind`, closed (and its schema dropped) afterwards."""
    if kind == "postgres":
        async with (
            postgres_schema_dsn() as dsn,
            opened(make_storage(kind, dsn, revocation_ttl, reuse_window)) as storage,
        ):
            yield storage
        return
    location = str(tmp_path / "auth.db")
    async with opened(
        make_storage(kind, location, revocation_ttl, reuse_window)
    ) as storage:
        yield storage
