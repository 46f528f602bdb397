"""SQLite backend on the standard `sqlite3` module: one connection per process, owned by
one thread of the storage's own; WAL so that several worker processes can share the
file; short `BEGIN IMMEDIATE` write transactions.

Each plan (a read, or a whole write transaction) runs in that thread in one hop: a hop
costs more than the statements, and no other coroutine's statement can land inside a
transaction. A failed COMMIT (disk full, I/O error) is rolled back, so the connection
stays usable. The data folder is created 0700 and the database file 0600 (SQLite gives
its -wal and -shm files the database file's mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from . import migrations
from .base import DEFAULT_REUSE_WINDOW
from .errors import StorageUnavailable
from .sql import SQLStorage
from .sqlkit import ALL, BEGIN_KIND, MANY, ONE, RUN, WRITE_KIND, Dialect, Op, Plan

T = TypeVar("T")
WAL_ATTEMPTS = 50

SQLITE = Dialect(
    name="sqlite",
    parameter=r"?\1",
    fragments={
        "for_update": "",
        "for_share": "",
        "skip_locked": "",
        "blob": "BLOB",
        "without_rowid": " WITHOUT ROWID",
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "in_list_1": "IN (SELECT value FROM json_each($1))",
    },
    row_locks=False,
    writable_ctes=False,
    locks={},
    notify=None,
    list_param=json.dumps,
    storable=lambda text: True,
    escape=lambda text: text,
)

# Primary result codes meaning "the database cannot be used now", not "bad SQL":
# BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
_UNAVAILABLE_CODES = {5, 6, 7, 8, 10, 11, 13, 14, 15, 26}
_UNAVAILABLE_TEXTS = (
    "disk i/o error",
    "unable to open",
    "database or disk is full",
    "database is locked",
    "file is not a database",
    "malformed",
    "readonly database",
    "out of memory",
)


class _Thread:
    """One thread running submitted functions in order; each result comes back to the
    caller's event loop with one call_soon_threadsafe (lighter than an executor)."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        future = asyncio.get_running_loop().create_future()
        self._queue.put((future, function, args))
        return await future

    def stop(self) -> None:
        """Finish what was submitted, then end the thread (blocking)."""
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, function, args = item
            try:
                result = function(*args)
            except BaseException as exc:
                future.get_loop().call_soon_threadsafe(_settle, future, None, exc)
            else:
                future.get_loop().call_soon_threadsafe(_settle, future, result, None)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class SQLiteStorage(SQLStorage):
    dialect = SQLITE
    connection_class: ClassVar[type[sqlite3.Connection]] = sqlite3.Connection

    def __init__(
        self,
        path: str,
        revocation_ttl: int,
        *,
        reuse_window: int = DEFAULT_REUSE_WINDOW,
    ) -> None:
        super().__init__(revocation_ttl, reuse_window=reuse_window)
        self.path = path
        self._thread: _Thread | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self._thread = _Thread("sqlite-storage")
        try:
            await self._call(self._connect)
            await self._run(migrations.migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await thread.call(conn.close)
        await asyncio.to_thread(thread.stop)

    async def _run(self, plan: Callable[..., Plan[T]], *args: Any) -> T:
        return await self._call(self._drive, plan, args)

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in the connection's thread; driver errors that mean the
        database is unusable become StorageUnavailable."""
        if self._thread is None:
            raise StorageUnavailable("the SQLite storage is not open")
        try:
            return await self._thread.call(function, *args)
        except (sqlite3.Error, OSError) as exc:
            if _unavailable(exc):
                raise StorageUnavailable(f"SQLite: {exc}") from exc
            raise

    # in the connection's thread

    def _connect(self) -> None:
        if self.path != ":memory:":
            _create_private_file(Path(self.path))
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            factory=self.connection_class,
            cached_statements=256,
        )
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _drive(self, plan_function: Callable[..., Plan[T]], args: tuple) -> T:
        conn = self._conn
        assert conn is not None, "storage is not open"
        plan = plan_function(self.ctx, *args)
        try:
            op = next(plan)
            while True:
                op = plan.send(self._execute(conn, op))
        except StopIteration as done:
            answer = done.value
        except BaseException:
            _roll_back(conn)
            raise
        if conn.in_transaction:
            try:
                conn.commit()
            except BaseException:
                _roll_back(conn)
                raise
        return answer

    def _execute(self, conn: sqlite3.Connection, op: Op) -> Any:
        kind = op.kind
        if kind == ONE:
            rows = conn.execute(op.sql, op.args).fetchall()
            return rows[0] if rows else None
        if kind == ALL:
            return conn.execute(op.sql, op.args).fetchall()
        if kind == RUN:
            return conn.execute(op.sql, op.args).rowcount
        if kind == MANY:
            conn.executemany(op.sql, op.args)
            return None
        if kind == BEGIN_KIND:
            conn.execute("BEGIN IMMEDIATE")
        elif kind != WRITE_KIND:
            raise ValueError(f"unknown operation {kind!r}")
        self.write_transactions += 1
        return None


def _roll_back(conn: sqlite3.Connection) -> None:
    """Leave the connection out of any transaction, whatever state it is in."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL, so readers never wait for the writer. The switch can answer
    "locked" at once, without the busy timeout, while other processes open the same
    file: retry it for a while."""
    for attempt in range(WAL_ATTEMPTS):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def _create_private_file(path: Path) -> None:
    """The folders this creates are 0700 and a new database file 0600, whatever the
    umask; existing ones are left as they are."""
    missing = []
    folder = path.parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _UNAVAILABLE_CODES
    text = str(exc).lower()
    return any(known in text for known in _UNAVAILABLE_TEXTS)
