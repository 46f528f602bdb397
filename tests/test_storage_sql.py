"""What only the SQL backends have: several processes on one database, schema versions
and upgrades, SQLite's files and failed commits, PostgreSQL going away and coming back,
its LISTEN/NOTIFY push and its cross-transaction races."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
import threading
import uuid
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from storage import (
    LastAdmin,
    NewSession,
    PurgeResult,
    RefreshResult,
    Revocation,
    RevokedSession,
    RevokeReason,
    SchemaTooNew,
    SessionInfo,
    Storage,
    StorageUnavailable,
    User,
    migrations,
)
from storage.sqlite import SQLiteStorage
from storage.sqlkit import BEGIN, Ctx, Plan, run
from tests.backends import (
    BACKENDS,
    make_storage,
    open_test_storage,
    opened,
    postgres_schema_dsn,
)
from tests.storage_kit import (
    POSTGRES_ONLY,
    REPLAYED,
    REVOKED,
    ROTATED,
    T1,
    T2,
    T3,
    UNKNOWN,
    VALID,
    fullwidth,
    make_user,
    refresh,
    rotated,
    run_sql,
    sql_database_fixture,  # noqa: F401
    start_session,
    token,
    user_with_session,
)

NOT_POSTGRES = [param for param in BACKENDS if param.values[0] != "postgres"]


@pytest.mark.parametrize("kind", NOT_POSTGRES)
async def test_backends_without_push_say_so(kind: str, tmp_path: Path) -> None:
    async with open_test_storage(kind, tmp_path) as store:
        assert await store.watch_revocations(lambda: None) is False


# several processes on one SQL database


@asynccontextmanager
async def two_processes(
    database: tuple[str, str],
) -> AsyncIterator[tuple[Storage, Storage]]:
    """Two storages opened on one database, as two processes would."""
    kind, location = database
    async with (
        opened(make_storage(kind, location)) as one,
        opened(make_storage(kind, location)) as two,
    ):
        yield one, two


async def test_concurrent_refreshes_from_two_processes_rotate_once(
    sql_database: tuple[str, str],
) -> None:
    async with two_processes(sql_database) as (one, two):
        user = await user_with_session(one)
        request = refresh(T1, T2, 100)
        calls = [
            store.use_refresh_token(request) for _ in range(25) for store in (one, two)
        ]
        results = await asyncio.gather(*calls)
        assert Tally(r.outcome for r in results) == {ROTATED: 1, REPLAYED: 49}
        assert {(r.user, r.session_id, r.expires_at) for r in results} == {
            (user, "s1", 2000)
        }
        await rotated(two, user, refresh(T2, T3, 101))


async def test_purges_from_two_processes_share_the_work(
    sql_database: tuple[str, str],
) -> None:
    async with two_processes(sql_database) as (one, two):
        user = make_user()
        await one.create_user(user)
        for i in range(6):
            await start_session(one, f"e{i}", token(f"e{i}"), expires_at=100)
        await start_session(one, "live", T1)
        first, second = await asyncio.gather(
            one.purge_expired(500, 10), two.purge_expired(500, 10)
        )
        assert first + second == PurgeResult(sessions=6, tokens=6, other=0)
        assert await two.purge_expired(500, 10) == PurgeResult()
        result = await two.use_refresh_token(refresh(T1, None, 500))
        assert result == RefreshResult(VALID, user, "live", 2000)


async def test_secret_is_shared_by_processes(sql_database: tuple[str, str]) -> None:
    async with two_processes(sql_database) as (one, two):
        first, second = await asyncio.gather(
            one.get_or_create_secret("hs256", b"one"),
            two.get_or_create_secret("hs256", b"two"),
        )
        assert first == second and first in (b"one", b"two")
        assert await one.get_or_create_secret("hs256", b"three") == first


async def test_revocations_reach_the_other_process(
    sql_database: tuple[str, str],
) -> None:
    async with two_processes(sql_database) as (one, two):
        await user_with_session(one)
        _, cursor = await two.revocations_since(None, 0)
        await one.revoke_session(T1, RevokeReason.SIGNOUT, 10)
        rows, _ = await two.revocations_since(cursor, 10)
        assert rows == [Revocation("s1", 70)]


# schema versions


async def schema_versions(store: Storage) -> list[int]:
    rows = await run_sql(store, "SELECT version FROM schema_version ORDER BY version")
    return [row[0] for row in rows]


async def test_reopening_keeps_the_data(sql_database: tuple[str, str]) -> None:
    kind, location = sql_database
    user = make_user()
    async with opened(make_storage(kind, location)) as store:
        await store.create_user(user)
    async with opened(make_storage(kind, location)) as store:
        assert await store.get_user("u1") == user
        assert await schema_versions(store) == list(range(1, migrations.LATEST + 1))


async def test_processes_starting_together_migrate_once(
    sql_database: tuple[str, str],
) -> None:
    kind, location = sql_database
    stores = [make_storage(kind, location) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert await schema_versions(stores[0]) == list(range(1, migrations.LATEST + 1))
        await stores[0].create_user(make_user())
        assert await stores[3].find_user(username="alice") == make_user()
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(sql_database: tuple[str, str]) -> None:
    kind, location = sql_database
    newer = migrations.LATEST + 1
    async with opened(make_storage(kind, location)) as store:
        await run_sql(store, f"INSERT INTO schema_version VALUES ({newer})")
    with pytest.raises(SchemaTooNew) as caught:
        async with opened(make_storage(kind, location)):
            pass
    assert str(caught.value) == migrations.too_new_message(newer)


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_works_inside_the_schema_of_its_dsn(kind: str) -> None:
    async with postgres_schema_dsn() as dsn, opened(make_storage(kind, dsn)) as store:
        schema = dsn.rpartition("search_path=")[2]
        await store.create_user(make_user())
        # more connections than one, each reset by the pool, all keep the search path
        found = await asyncio.gather(
            *(store.find_user(username="alice") for _ in range(20))
        )
        assert found == [make_user()] * 20
        rows = await run_sql(
            store,
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = '{schema}' ORDER BY table_name",
        )
        assert [row[0] for row in rows] == [
            "counters",
            "refresh_tokens",
            "revocations",
            "schema_version",
            "secrets",
            "sessions",
            "users",
        ]
        assert await run_sql(store, "SELECT current_schema()") == [(schema,)]


# upgrading a version-1 database

_V1_USERS = [
    # id, username, username_key, email, email_key, password_hash, roles, created_at;
    # version 1 keyed by casefold(): u2 is a look-alike of u1 in both names.
    (
        "u1",
        "Alice",
        "alice",
        "kevin@example.com",
        "kevin@example.com",
        "h1",
        "user",
        10,
    ),
    (
        "u2",
        fullwidth("ALICE"),
        fullwidth("alice"),
        f"kevin@{fullwidth('e')}xample.com",
        f"kevin@{fullwidth('e')}xample.com",
        "h2",
        "user,admin",
        20,
    ),
    ("u3", "bob", "bob", "Bob@Bücher.example", "bob@bücher.example", "h3", "user", 30),
]
_V1_SESSIONS = [
    ("s1", "u1", 100, 5000, None, None),
    ("s2", "u2", 100, 5000, 150, "signout"),
]
_V1_TOKENS = [(T1, "s1", 200, T2), (T2, "s1", None, None), (T3, "s2", None, None)]


async def write_version_1(kind: str, location: str) -> None:
    """A database as version 1 of the server left it, with rows."""
    statements = [
        *migrations.MIGRATIONS[0].statements,
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version VALUES (1)",
    ]
    inserts = [
        ("INSERT INTO users VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", _V1_USERS),
        ("INSERT INTO sessions VALUES ($1, $2, $3, $4, $5, $6)", _V1_SESSIONS),
        ("INSERT INTO refresh_tokens VALUES ($1, $2, $3, $4)", _V1_TOKENS),
        ("INSERT INTO revocations VALUES ($1, $2)", [("s2", 210)]),
    ]
    if kind == "sqlite":
        from storage.sqlite import SQLITE

        conn = sqlite3.connect(location, isolation_level=None)
        try:
            for statement in statements:
                conn.execute(SQLITE.sql(statement))
            for sql, rows in inserts:
                conn.executemany(SQLITE.sql(sql), rows)
        finally:
            conn.close()
        return
    import asyncpg

    from storage.postgres import POSTGRES

    conn = await asyncpg.connect(location)
    try:
        for statement in statements:
            await conn.execute(POSTGRES.sql(statement))
        for sql, rows in inserts:
            await conn.executemany(sql, rows)
    finally:
        await conn.close()


async def test_a_version_1_database_upgrades_in_place(
    sql_database: tuple[str, str],
) -> None:
    kind, location = sql_database
    await write_version_1(kind, location)
    async with opened(make_storage(kind, location)) as store:
        assert await schema_versions(store) == [1, 2]
        alice = User("u1", "Alice", "kevin@example.com", "h1", ("user",), 10)
        look_alike = User(
            "u2",
            fullwidth("ALICE"),
            f"kevin@{fullwidth('e')}xample.com",
            "h2",
            ("user", "admin"),
            20,
        )
        assert await store.get_user("u1") == alice
        assert await store.get_user("u2") == look_alike
        # canonical keys now; the later look-alike keeps its old keys and its spelling
        assert await store.find_user(username="ALICE") == alice
        assert await store.find_user(username=f"{fullwidth('a')}lice") == alice
        assert await store.find_user(username=fullwidth("ALICE")) == look_alike
        assert await store.find_user(username=fullwidth("alice")) == look_alike
        assert await store.find_user(email="KEVIN@example.com") == alice
        assert await store.find_user(email=_V1_USERS[1][3]) == look_alike
        bob = await store.find_user(email="bob@xn--bcher-kva.example")
        assert bob is not None and bob.id == "u3"
        # sessions, retired tokens (seconds then, milliseconds now) and revocations
        assert await store.list_sessions("u1", 300) == [
            SessionInfo("s1", "u1", 100, 100, 5000, None, None)
        ]
        replay = await store.use_refresh_token(refresh(T1, T2, 210, strict=True))
        assert replay == RefreshResult(REPLAYED, alice, "s1", 2000)
        assert await store.revocations_since(None, 200) == (
            [Revocation("s2", 210)],
            1,
        )
        result = await store.use_refresh_token(refresh(T3, None, 200))
        assert result == RefreshResult(REVOKED, look_alike, "s2")
        await rotated(store, alice, refresh(T2, token("t4"), 300, expires_at=9000))


def test_colliding_keys_keep_working_and_warn(caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        ("a", "Alice", "alice"),
        ("b", "ALICE", "alice2"),
        ("c", "aLiCe", "alice2"),  # even its old key is taken now: a new one
        ("d", "Bob", "bob"),
    ]
    chosen = migrations.assign_keys(rows, str.casefold, "username_key")
    assert chosen == {"a": "alice", "b": "alice2", "c": "alice2#c#", "d": "bob"}
    assert [r.getMessage() for r in caplog.records] == [
        "user b keeps its old username_key key: its canonical key is another user's",
        "user c keeps its old username_key key: its canonical key is another user's",
    ]


# SQLite: files, failed commits, unusable databases, write locks


@pytest.mark.parametrize("umask", [0o000, 0o077])
async def test_sqlite_files_are_private(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "new" / "data" / "auth.db"
    before = os.umask(umask)
    try:
        async with opened(make_storage("sqlite", str(path))) as store:
            await store.create_user(make_user())
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in (path.parent.parent, path.parent, *path.parent.iterdir())
            }
    finally:
        os.umask(before)
    assert modes == {
        "new": 0o700,
        "data": 0o700,
        "auth.db": 0o600,
        "auth.db-wal": 0o600,
        "auth.db-shm": 0o600,
    }


class FlakyConnection(sqlite3.Connection):
    """A connection whose COMMIT, or every statement, fails on demand."""

    fail_commit = False
    broken = False

    def commit(self) -> None:
        if FlakyConnection.fail_commit:
            FlakyConnection.fail_commit = False
            raise sqlite3.OperationalError("disk I/O error")
        super().commit()

    def execute(self, *args: Any) -> sqlite3.Cursor:
        if FlakyConnection.broken:
            raise sqlite3.OperationalError("disk I/O error")
        return super().execute(*args)

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        if FlakyConnection.broken:
            raise sqlite3.OperationalError("disk I/O error")
        return super().executemany(*args)


class FlakySQLiteStorage(SQLiteStorage):
    connection_class = FlakyConnection


@asynccontextmanager
async def flaky_sqlite(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    FlakyConnection.fail_commit = FlakyConnection.broken = False
    try:
        async with opened(FlakySQLiteStorage(str(tmp_path / "auth.db"), 60)) as store:
            yield store
    finally:
        FlakyConnection.fail_commit = FlakyConnection.broken = False


async def test_sqlite_failed_commit_is_rolled_back(tmp_path: Path) -> None:
    async with flaky_sqlite(tmp_path) as store:
        user = await user_with_session(store)
        FlakyConnection.fail_commit = True
        with pytest.raises(StorageUnavailable, match="disk I/O error"):
            await store.use_refresh_token(refresh(T1, T2, 100))
        # nothing of it stayed, and the connection works
        result = await store.use_refresh_token(refresh(T2, T3, 101))
        assert result == RefreshResult(UNKNOWN)
        await rotated(store, user, refresh(T1, T2, 102))
        bob = make_user("u2", "bob", "bob@example.com")
        await store.create_user(bob)
        assert await store.find_user(username="bob") == bob


async def test_sqlite_close_lets_the_batch_in_progress_commit(tmp_path: Path) -> None:
    """close() while a plan is running in the storage thread: the plan's write, which
    its caller is told succeeded, is committed before the connection closes."""
    release = threading.Event()

    def held_insert(c: Ctx) -> Plan[str]:
        yield BEGIN
        yield run(
            c.q("INSERT INTO counters (key, count, reset_at) VALUES ($1, 1, 0)"), "k1"
        )
        release.wait(5)  # in the storage thread
        return "written"

    path = tmp_path / "auth.db"
    store = SQLiteStorage(str(path), 960)
    await store.open()
    plan = asyncio.create_task(store._run(held_insert))
    await asyncio.sleep(0.05)  # the plan is running
    closing = asyncio.create_task(store.close())
    while store._thread is not None:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # close() has done all it does before the plan ends
    release.set()
    assert await plan == "written"
    await closing
    rows = sqlite3.connect(path).execute("SELECT key FROM counters").fetchall()
    assert rows == [("k1",)]


def every_call(store: Storage) -> list[Callable[[], Awaitable[object]]]:
    """One call of every storage method."""
    session = NewSession("s9", "u1", token("s9"), 0, 1000)
    signout = RevokeReason.SIGNOUT
    return [
        store.ping,
        lambda: store.create_user(make_user("u9", "zed", "zed@example.com")),
        lambda: store.get_user("u1"),
        lambda: store.find_user(username="alice"),
        lambda: store.find_user(email="alice@example.com"),
        lambda: store.list_users(10, None, None),
        lambda: store.update_user("u1", disabled=True, now=5),
        lambda: store.change_password("u1", "hash-of-u1", "h", None, 5),
        lambda: store.delete_user("u1", 5),
        lambda: store.create_session(session, "hash-of-u1"),
        lambda: store.use_refresh_token(refresh(T1, T2, 5)),
        lambda: store.revoke_session(T1, signout, 5),
        lambda: store.list_sessions("u1", 5),
        lambda: store.revoke_user_session("u1", "s1", signout, 5),
        lambda: store.revoke_other_sessions("u1", None, signout, 5),
        lambda: store.revocations_since(None, 5),
        lambda: store.hit_counter("k", 60, 5),
        lambda: store.refund_counter("k", 5),
        lambda: store.read_counter("k", 5),
        lambda: store.delete_counter("k"),
        lambda: store.purge_expired(5, 10),
        lambda: store.get_or_create_secret("s", b"x"),
    ]


async def test_sqlite_io_errors_are_storage_unavailable(tmp_path: Path) -> None:
    async with flaky_sqlite(tmp_path) as store:
        user = await user_with_session(store)
        FlakyConnection.broken = True
        for call in every_call(store):
            with pytest.raises(StorageUnavailable):
                await call()
        FlakyConnection.broken = False
        await rotated(store, user, refresh(T1, T2, 10))


async def test_sqlite_unopenable_file_is_storage_unavailable(tmp_path: Path) -> None:
    (tmp_path / "auth.db").mkdir()  # a folder where the file should be
    with pytest.raises(StorageUnavailable, match="unable to open"):
        async with opened(make_storage("sqlite", str(tmp_path / "auth.db"))):
            pass
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageUnavailable):
        async with opened(make_storage("sqlite", str(tmp_path / "file" / "auth.db"))):
            pass


@asynccontextmanager
async def one_batch(store: SQLiteStorage) -> AsyncIterator[None]:
    """Calls started in the body queue up behind a call that blocks the storage's
    thread; they then run as one batch (one transaction) when the body ends."""
    assert store._thread is not None
    gate = threading.Event()
    blocker = asyncio.ensure_future(store._thread.call(gate.wait))
    await asyncio.sleep(0)  # the thread is now waiting on the gate
    try:
        yield
        await asyncio.sleep(0)  # every call of the body is queued
    finally:
        gate.set()
        await blocker


T4, T5 = token("t4"), token("t5")


def writes_then_fails(c: Ctx) -> Plan[None]:
    """A plan that writes, then raises: its write must not stay."""
    yield BEGIN
    yield run("UPDATE sessions SET expires_at = 1 WHERE id = 's2'")
    raise LastAdmin()


async def test_sqlite_batch_commits_together_and_fails_alone(tmp_path: Path) -> None:
    """Group commit: concurrent plans share one transaction, yet each gets its own
    answer; one that fails takes back its own writes only."""
    async with opened(SQLiteStorage(str(tmp_path / "auth.db"), 60)) as store:
        user = await user_with_session(store)
        await start_session(store, "s2", T2)
        transactions = store.write_transactions
        async with one_batch(store):
            calls = [
                asyncio.ensure_future(store.use_refresh_token(refresh(T1, T3, 10))),
                asyncio.ensure_future(store._run(writes_then_fails)),
                asyncio.ensure_future(store.use_refresh_token(refresh(T3, T4, 11))),
                asyncio.ensure_future(store.use_refresh_token(refresh(T5, T4, 12))),
                asyncio.ensure_future(store.use_refresh_token(refresh(T2, T1, 13))),
            ]
        first, failing, second, unknown, other = await asyncio.gather(
            *calls, return_exceptions=True
        )
        assert first == RefreshResult(ROTATED, user, "s1", 2000)
        assert isinstance(failing, LastAdmin)
        # the successor T3, written by the batch's first plan, was read as current
        assert second == RefreshResult(ROTATED, user, "s1", 2000)
        assert unknown == RefreshResult(UNKNOWN)
        # its successor T1 exists: it fails after retiring T2, which is taken back
        assert isinstance(other, sqlite3.IntegrityError)
        assert store.write_transactions == transactions + 4
        rows = await run_sql(store, "SELECT id, expires_at FROM sessions ORDER BY id")
        assert rows == [("s1", 2000), ("s2", 1000)]
        await rotated(store, user, refresh(T2, T5, 20))


async def test_sqlite_failed_batch_commit_leaves_nothing(tmp_path: Path) -> None:
    """A COMMIT that fails fails every plan that ran in its transaction, the reads
    among them, and none of their writes stays."""
    async with flaky_sqlite(tmp_path) as store:
        assert isinstance(store, SQLiteStorage)
        user = await user_with_session(store)
        await start_session(store, "s2", T2)
        async with one_batch(store):
            FlakyConnection.fail_commit = True
            calls = [
                asyncio.ensure_future(store.use_refresh_token(refresh(T1, T3, 10))),
                asyncio.ensure_future(store.use_refresh_token(refresh(T3, T4, 11))),
                asyncio.ensure_future(
                    store.revoke_session(T2, RevokeReason.SIGNOUT, 12)
                ),
            ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        for outcome in outcomes:
            assert isinstance(outcome, StorageUnavailable), outcome
            assert "disk I/O error" in str(outcome)
        assert len({id(outcome) for outcome in outcomes}) == 3  # one error each
        assert await store.use_refresh_token(refresh(T3, T1, 20)) == RefreshResult(
            UNKNOWN
        )
        await rotated(store, user, refresh(T1, T3, 21))
        assert await store.revoke_session(T2, RevokeReason.SIGNOUT, 22) == (
            RevokedSession("s2", "u1", was_live=True)
        )


async def test_sqlite_checkpoints_in_a_thread_of_its_own(tmp_path: Path) -> None:
    """The WAL is copied back by a thread of the storage's own, ended by close()."""

    def checkpointers() -> int:
        return sum(t.name == "sqlite-checkpoint" for t in threading.enumerate())

    before = checkpointers()
    store = SQLiteStorage(str(tmp_path / "auth.db"), 60)
    async with opened(store):
        assert checkpointers() == before + 1
        user = await user_with_session(store)
        await rotated(store, user, refresh(T1, T2, 10))
        (mode,) = (await run_sql(store, "PRAGMA journal_mode"))[0]
        assert mode == "wal"
    assert checkpointers() == before


async def test_sqlite_junk_requests_take_no_write_lock(tmp_path: Path) -> None:
    """Issue 10.1: with another process holding the file's write lock, unknown tokens
    and revoked sessions are still answered at once (a write would wait for it)."""
    path = str(tmp_path / "auth.db")
    was_revoked = RevokedSession("s2", "u1", was_live=False)
    async with opened(make_storage("sqlite", path)) as store:
        user = await user_with_session(store)
        await start_session(store, "s2", T2)
        await store.revoke_session(T2, RevokeReason.SIGNOUT, 5)
        other = await asyncio.to_thread(
            sqlite3.connect, path, isolation_level=None, check_same_thread=False
        )
        try:
            await asyncio.to_thread(other.execute, "BEGIN IMMEDIATE")
            for junk, answer, revoked in (
                (token("junk"), RefreshResult(UNKNOWN), None),
                (T2, RefreshResult(REVOKED, user, "s2"), was_revoked),
            ):
                assert await store.use_refresh_token(refresh(junk, T3, 10)) == answer
                signed_out = await store.revoke_session(junk, RevokeReason.SIGNOUT, 10)
                assert signed_out == revoked
        finally:
            await asyncio.to_thread(other.execute, "ROLLBACK")
            await asyncio.to_thread(other.close)


# PostgreSQL: going away and coming back


class Relay:
    """A TCP relay in front of PostgreSQL that a test can cut (every connection dropped,
    new ones refused, as while the server restarts) and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.links):
            writer.transport.abort()
        self.links.clear()

    async def _link(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.links |= {writer, up_writer}
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )
        for end in (writer, up_writer):
            self.links.discard(end)
            end.transport.abort()

    def dsn(self, dsn: str) -> str:
        parts = urlsplit(dsn)
        netloc = parts.netloc.rpartition("@")[0] + f"@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.transport.abort()


@asynccontextmanager
async def relayed_postgres() -> AsyncIterator[tuple[Relay, str]]:
    """A fresh schema reached through a Relay: (relay, dsn through it)."""
    async with postgres_schema_dsn() as dsn:
        parts = urlsplit(dsn)
        relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
        await relay.start()
        try:
            yield relay, relay.dsn(dsn)
        finally:
            await relay.cut()


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_away_is_storage_unavailable_then_recovers(kind: str) -> None:
    async with (
        relayed_postgres() as (relay, dsn),
        opened(make_storage(kind, dsn)) as store,
    ):
        user = await user_with_session(store)
        await relay.cut()
        for call in every_call(store):
            with pytest.raises(StorageUnavailable):
                await call()
        with pytest.raises(StorageUnavailable):  # starting meanwhile, too
            async with opened(make_storage(kind, dsn)):
                pass
        await relay.start()
        await store.ping()
        await rotated(store, user, refresh(T1, T2, 10))
        assert await store.find_user(username="alice") == user


IN_TIME = re.escape(
    "PostgreSQL: no answer in time (storage.command_timeout, storage.acquire_timeout)"
)


def hanging_postgres(dsn: str, pool_size: int = 10) -> Storage:
    """A PostgreSQL storage that gives up on a statement after 0.2 s and on getting a
    connection after 0.2 s."""
    from storage.postgres import PostgresStorage

    return PostgresStorage(
        dsn, 60, pool_size=pool_size, command_timeout=0.2, acquire_timeout=0.2
    )


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_statement_timeout_is_storage_unavailable(kind: str) -> None:
    """A statement that outlives `command_timeout` (a hung database) raises
    StorageUnavailable instead of waiting, is not run again, and leaves the storage
    working."""
    from storage.postgres import PostgresStorage
    from storage.sqlkit import one

    planned = 0

    def sleeping(c: Ctx) -> Plan[None]:
        nonlocal planned
        planned += 1
        yield one("SELECT pg_sleep(30)")

    async with postgres_schema_dsn() as dsn, opened(hanging_postgres(dsn)) as store:
        assert isinstance(store, PostgresStorage)
        user = await user_with_session(store)
        with pytest.raises(StorageUnavailable, match=IN_TIME):
            await store._run(sleeping)
        assert planned == 1
        assert await store.get_user("u1") == user


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_exhausted_pool_is_storage_unavailable(kind: str) -> None:
    """Every connection busy beyond `acquire_timeout`: StorageUnavailable, and the
    storage works again once one is free."""
    from storage.postgres import PostgresStorage

    async with (
        postgres_schema_dsn() as dsn,
        opened(hanging_postgres(dsn, pool_size=1)) as store,
    ):
        assert isinstance(store, PostgresStorage)
        user = await user_with_session(store)
        async with store.pool.acquire():
            with pytest.raises(StorageUnavailable, match=IN_TIME):
                await store.get_user("u1")
        assert await store.get_user("u1") == user


def with_application_name(dsn: str, name: str) -> str:
    return f"{dsn}&application_name={name}"


async def terminate(application_name: str, where: str = "TRUE") -> int:
    """End the server processes of these connections, as a crash or an operator would,
    and wait until they are gone (only those: the pool may already be opening new
    ones). Their number."""
    import asyncpg

    from tests.backends import POSTGRES_DSN

    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        pids = await conn.fetchval(
            "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity "
            f"WHERE application_name = $1 AND {where}",
            application_name,
        )
        # a statement of its own: the filter above must run before any termination
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids
        )
        while await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", pids
        ):
            await asyncio.sleep(0.01)
        return len(pids)
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_pool_recovers_from_killed_connections(kind: str) -> None:
    name = f"auth-test-{uuid.uuid4().hex[:12]}"
    async with (
        postgres_schema_dsn() as dsn,
        opened(make_storage(kind, with_application_name(dsn, name))) as store,
    ):
        user = await user_with_session(store)
        await asyncio.gather(*(store.get_user("u1") for _ in range(5)))  # 5 in pool
        assert await terminate(name) == 5  # the five the calls above opened
        # each call gets a working connection: the pool replaces the dead ones
        found = await asyncio.gather(*(store.get_user("u1") for _ in range(5)))
        assert found == [user] * 5
        await rotated(store, user, refresh(T1, T2, 10))


# PostgreSQL: revocations pushed (issue 15)


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_pushes_revocations_to_other_instances(kind: str) -> None:
    name = f"auth-test-{uuid.uuid4().hex[:12]}"
    async with postgres_schema_dsn() as dsn:
        listening = with_application_name(dsn, name)
        async with (
            opened(make_storage(kind, listening)) as one,
            opened(make_storage(kind, dsn)) as two,
        ):
            pokes: asyncio.Queue[None] = asyncio.Queue()
            assert await one.watch_revocations(lambda: pokes.put_nowait(None))
            await user_with_session(two)
            await start_session(two, "s2", T2)
            _, cursor = await one.revocations_since(None, 0)

            await two.revoke_session(T1, RevokeReason.SIGNOUT, 10)
            await asyncio.wait_for(pokes.get(), 10)
            rows, cursor = await one.revocations_since(cursor, 10)
            assert rows == [Revocation("s1", 70)]
            # nothing is pushed for a sign-out that changes nothing
            await two.revoke_session(T1, RevokeReason.SIGNOUT, 11)
            # the listener's connection dies: it reconnects and says so once
            assert await terminate(name, "query LIKE 'LISTEN%'") == 1
            await asyncio.wait_for(pokes.get(), 10)
            await two.revoke_session(T2, RevokeReason.SIGNOUT, 12)
            await asyncio.wait_for(pokes.get(), 10)
            assert pokes.empty()
            rows, _ = await one.revocations_since(cursor, 12)
            assert rows == [Revocation("s2", 72)]


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_on_a_host_pool_listens_again_after_losing_its_connection(
    kind: str,
) -> None:
    """On a pool lent by a host app, the listener's connection dies: it listens again
    on another of the pool's connections, says so once, and closing the storage leaves
    the host's pool open and working."""
    import asyncpg

    from storage.postgres import PostgresStorage

    name = f"hostpool-{uuid.uuid4().hex[:12]}"
    async with postgres_schema_dsn() as dsn:
        pool = await asyncpg.create_pool(
            with_application_name(dsn, name), min_size=1, max_size=3
        )
        try:
            store = PostgresStorage.on_pool(pool, 960)
            await store.open()
            pokes: asyncio.Queue[None] = asyncio.Queue()
            assert await store.watch_revocations(lambda: pokes.put_nowait(None))
            assert await terminate(name, "query LIKE 'LISTEN%'") == 1
            await asyncio.wait_for(pokes.get(), 10)
            await user_with_session(store)
            await store.revoke_session(T1, RevokeReason.SIGNOUT, 10)
            await asyncio.wait_for(pokes.get(), 10)
            await store.close()
            assert await pool.fetchval("SELECT count(*) FROM revocations") == 1
        finally:
            await pool.close()


# PostgreSQL: races between transactions, made deterministic with a raw connection
# doing what another instance's transaction does, held open at the critical point


@asynccontextmanager
async def raw_connection(dsn: str) -> AsyncIterator[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def until_waiting_for_a_lock(
    conn: Any, application_name: str, task: asyncio.Task
) -> None:
    """Return once a connection of `application_name` waits for a lock, or `task` is
    done (then it did not wait: the test fails on what it did meanwhile)."""
    while not task.done() and not await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND wait_event_type = 'Lock'",
        application_name,
    ):
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_revocation_poll_misses_no_late_commit(kind: str) -> None:
    """Another instance's revoking transaction has taken sequence number n and not
    committed yet when this instance revokes (n + 1) and a poll runs: the poll must
    not pass n + 1 before n is visible, or n would never be returned."""
    from storage.postgres import POSTGRES

    name = f"auth-test-{uuid.uuid4().hex[:12]}"
    async with (
        postgres_schema_dsn() as dsn,
        opened(make_storage(kind, with_application_name(dsn, name))) as store,
        raw_connection(dsn) as other,
        raw_connection(dsn) as observer,
    ):
        await user_with_session(store)
        _, cursor = await store.revocations_since(None, 0)
        transaction = other.transaction()
        await transaction.start()
        await other.execute(POSTGRES.locks["revocations"])
        await other.execute(
            "INSERT INTO revocations (session_id, keep_until) VALUES ('slow', 99)"
        )
        signout = asyncio.create_task(
            store.revoke_session(T1, RevokeReason.SIGNOUT, 10)
        )
        await until_waiting_for_a_lock(observer, name, signout)
        assert await store.revocations_since(cursor, 10) == ([], cursor)
        await transaction.commit()
        assert await signout == RevokedSession("s1", "u1", was_live=True)
        rows, _ = await store.revocations_since(cursor, 10)
        assert rows == [Revocation("slow", 99), Revocation("s1", 70)]


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_last_admin_check_waits_for_a_concurrent_demotion(
    kind: str,
) -> None:
    """Another instance is demoting admin a2 (its transaction holds the admins lock and
    has not committed): demoting a1 now must wait, then see a2 demoted, and refuse."""
    from storage.postgres import POSTGRES

    name = f"auth-test-{uuid.uuid4().hex[:12]}"
    admins = ("user", "admin")
    async with (
        postgres_schema_dsn() as dsn,
        opened(make_storage(kind, with_application_name(dsn, name))) as store,
        raw_connection(dsn) as other,
        raw_connection(dsn) as observer,
    ):
        for n in (1, 2):
            user = make_user(f"a{n}", f"admin{n}", f"a{n}@example.com", admins)
            await store.create_user(user)
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT 1 FROM users WHERE id = 'a2' FOR UPDATE")
        await other.execute(POSTGRES.locks["admins"])
        await other.execute("UPDATE users SET roles = 'user' WHERE id = 'a2'")
        demotion = asyncio.create_task(store.update_user("a1", roles=("user",), now=1))
        await until_waiting_for_a_lock(observer, name, demotion)
        await transaction.commit()
        with pytest.raises(LastAdmin):
            await demotion
        a1 = await store.get_user("a1")
        assert a1 is not None and a1.roles == admins
