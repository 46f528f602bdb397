"""SQLite backend on the standard `sqlite3` module: one connection per process, owned by
one thread of the storage's own; WAL so that several worker processes can share the
file; short `BEGIN IMMEDIATE` write transactions.

Each plan (a read, or a whole write transaction) runs in that thread in one hop: a hop
costs more than the statements, and no other coroutine's statement can land inside a
transaction. The plans that queued up meanwhile run as one batch in one transaction
(group commit, `_process`): one COMMIT and one wake-up of the event loop for all of
them. WAL checkpoints run in a thread of their own (`_Checkpointer`), off the
commits' path. A failed COMMIT (disk full, I/O error) is rolled back, so the connection
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from . import migrations
from .base import DEFAULT_REUSE_WINDOW
from .errors import StorageUnavailable
from .sql import SQLStorage
from .sqlkit import ALL, BEGIN_KIND, MANY, ONE, RUN, WRITE_KIND, Dialect, Op, Plan

T = TypeVar("T")
WAL_ATTEMPTS = 50
# Plans queued while the thread was busy run in one transaction, at most this many: a
# commit costs more than a refresh's statements, and the batch's first caller waits
# for the whole batch.
MAX_BATCH = 64
# WAL checkpoints: in the background (_Checkpointer) at most this often, and by the
# writer itself only once the WAL holds this many pages (SQLite's default: 1,000).
CHECKPOINT_GAP = 0.2
INLINE_CHECKPOINT_PAGES = 10_000
_Item = tuple[Callable[..., Any], tuple, bool]  # function, arguments, is a plan
_Outcome = tuple[Any, BaseException | None]  # result, error

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
    """One thread running submitted work in order. What has queued up while it was busy
    is taken as one batch and handed to `process` (see SQLiteStorage._process); the
    results go back to the callers' event loop in one call_soon_threadsafe per batch
    (lighter than an executor, and one wake-up of the loop for many answers)."""

    def __init__(
        self, name: str, process: Callable[[list[_Item]], list[_Outcome]]
    ) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._process = process
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` alone in the thread."""
        return await self._submit(function, args, False)

    async def run_plan(self, drive: Callable[..., T], *args: Any) -> T:
        """A plan, which `process` may run in one transaction with other plans."""
        return await self._submit(drive, args, True)

    async def _submit(self, function: Callable, args: tuple, is_plan: bool) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.put((future, function, args, is_plan))
        return await future

    def stop(self) -> None:
        """Finish what was submitted, then end the thread (blocking)."""
        self._queue.put(None)
        self._thread.join()

    def _work(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        running = True
        while running:
            batch = [get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(get_nowait())
                except queue.Empty:
                    break
            if None in batch:
                running = False
                batch = batch[: batch.index(None)]  # nothing is submitted after stop
            if not batch:
                continue
            try:
                outcomes = self._process([item[1:] for item in batch])
            except BaseException as exc:  # a bug: no caller may be left waiting
                outcomes = [(None, exc)] * len(batch)
            settled: dict[asyncio.AbstractEventLoop, list] = {}
            for (future, *_), outcome in zip(batch, outcomes, strict=True):
                settled.setdefault(future.get_loop(), []).append((future, *outcome))
            for loop, answers in settled.items():
                loop.call_soon_threadsafe(_settle_all, answers)


def _settle_all(
    answers: list[tuple[asyncio.Future, Any, BaseException | None]],
) -> None:
    for future, result, error in answers:
        if future.done():  # the caller was cancelled
            continue
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
        self._checkpointer: _Checkpointer | None = None

    async def open(self) -> None:
        self._thread = _Thread("sqlite-storage", self._process)
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
        # In the storage thread, after the batch in progress has committed: closing the
        # connection under it would roll back writes already answered as done.
        await thread.call(self._close_connection)
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)
        await asyncio.to_thread(thread.stop)

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, plan: Callable[..., Plan[T]], *args: Any) -> T:
        if self._thread is None:
            raise StorageUnavailable("the SQLite storage is not open")
        return await self._unavailable_as_such(self._thread.run_plan(plan, *args))

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in the connection's thread, alone."""
        if self._thread is None:
            raise StorageUnavailable("the SQLite storage is not open")
        return await self._unavailable_as_such(self._thread.call(function, *args))

    @staticmethod
    async def _unavailable_as_such(work: Awaitable[T]) -> T:
        """Driver errors that mean the database is unusable become StorageUnavailable."""
        try:
            return await work
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
            if self.path != ":memory:":
                conn.execute(f"PRAGMA wal_autocheckpoint = {INLINE_CHECKPOINT_PAGES}")
                self._checkpointer = _Checkpointer(self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _process(self, items: list[_Item]) -> list[_Outcome]:
        """Run a batch in order. Plans share one write transaction (group commit): the
        first plan that writes begins it, each later one writes under a savepoint of
        its own, so that its failure undoes its writes alone, and one COMMIT ends them
        all. A plan that ran while the transaction was open (its reads may have seen
        the others' writes) gets its answer only if that transaction commits, else the
        error that ended it. Other work (connect, close) runs alone, after the
        transaction before it has ended."""
        outcomes: list[_Outcome] = []
        pending: list[int] = []  # the plans whose answers hang on the commit
        for function, args, is_plan in items:
            conn = self._conn
            if not is_plan:
                self._end_transaction(outcomes, pending)
                outcomes.append(_outcome(function, args))
            elif conn is None:
                outcomes.append(
                    (None, StorageUnavailable("the SQLite storage is closed"))
                )
            else:
                joined = conn.in_transaction
                outcome = self._drive(conn, function, args, joined)
                if outcome[1] is None:
                    if conn.in_transaction:
                        pending.append(len(outcomes))
                elif joined and not conn.in_transaction:  # it took the others down
                    _fail(outcomes, pending, outcome[1])
                outcomes.append(outcome)
        self._end_transaction(outcomes, pending)
        return outcomes

    def _drive(
        self,
        conn: sqlite3.Connection,
        plan_function: Callable[..., Plan[Any]],
        args: tuple,
        joined: bool,
    ) -> _Outcome:
        """One plan, in the batch's open transaction if `joined`. BEGIN and WRITE answer
        True when the transaction was already open: the plan's reads held the lock."""
        savepoint = False
        try:
            plan = plan_function(self.ctx, *args)
            op = next(plan)
            while True:
                if op.kind in _WRITES:
                    self.write_transactions += 1
                    held = conn.in_transaction
                    if not held:
                        conn.execute("BEGIN IMMEDIATE")
                    elif joined and not savepoint:
                        conn.execute("SAVEPOINT plan")
                        savepoint = True
                    op = plan.send(held)
                else:
                    op = plan.send(_execute(conn, op))
        except StopIteration as done:
            if savepoint:
                try:
                    conn.execute("RELEASE plan")
                except BaseException as exc:
                    _roll_back(conn)
                    return None, exc
            return done.value, None
        except BaseException as exc:
            if not joined:  # it began the transaction: nothing else is in it
                _roll_back(conn)
            elif savepoint and conn.in_transaction:
                try:  # take back its writes alone
                    conn.execute("ROLLBACK TO plan")
                    conn.execute("RELEASE plan")
                except BaseException:
                    _roll_back(conn)
            return None, exc

    def _end_transaction(self, outcomes: list[_Outcome], pending: list[int]) -> None:
        """Commit the batch's transaction, if one is open; if that fails, nothing of it
        stays and the plans that ran in it get the error."""
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.commit()
            except BaseException as exc:
                _roll_back(conn)
                _fail(outcomes, pending, exc)
            checkpointer = self._checkpointer
            if checkpointer is not None:
                checkpointer.nudge()
        pending.clear()


_WRITES = (BEGIN_KIND, WRITE_KIND)


def _execute(conn: sqlite3.Connection, op: Op) -> Any:
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
    raise ValueError(f"unknown operation {kind!r}")


def _outcome(function: Callable[..., Any], args: tuple) -> _Outcome:
    try:
        return function(*args), None
    except BaseException as exc:
        return None, exc


def _fail(outcomes: list[_Outcome], pending: list[int], error: BaseException) -> None:
    """The answers of the `pending` plans did not hold: each caller gets the error (a
    StorageUnavailable of its own when the database is unusable, as _call makes)."""
    for index in pending:
        if isinstance(error, (sqlite3.Error, OSError)) and _unavailable(error):
            own = StorageUnavailable(f"SQLite: {error}")
            own.__cause__ = error
            outcomes[index] = (None, own)
        else:
            outcomes[index] = (None, error)
    pending.clear()


class _Checkpointer:
    """Copies the WAL back into the database file (a PASSIVE checkpoint) in a thread and
    connection of its own, at most every CHECKPOINT_GAP seconds while there are
    commits: the copy and its two fsyncs would otherwise stall every request queued
    behind the commit that happened to cross SQLite's threshold. A checkpoint running
    here never blocks the writer. Under writes without a pause the WAL cannot restart
    from its beginning, so the writer's own checkpoint stays on as a bound
    (INLINE_CHECKPOINT_PAGES): it then finds nearly everything copied already."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._committed = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._work, name="sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def nudge(self) -> None:
        """Something was committed."""
        self._committed.set()

    def stop(self) -> None:
        """End the thread (blocking)."""
        self._stopping.set()
        self._committed.set()
        self._thread.join()

    def _work(self) -> None:
        try:
            conn = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error:  # then the writer's own checkpoints are all there are
            return
        try:
            conn.execute("PRAGMA synchronous = NORMAL")
            while True:
                self._committed.wait()
                if self._stopping.is_set():
                    return
                self._committed.clear()
                # Errors (a full disk, I/O) are the writer's to report: its own
                # checkpoint and commits meet them. This one tries again later.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self._stopping.wait(CHECKPOINT_GAP):
                    return
        finally:
            conn.close()


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
