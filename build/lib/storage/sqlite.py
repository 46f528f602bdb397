"""SQLite backend on aiosqlite: one connection per process, WAL so that several worker
processes can share the file, short `BEGIN IMMEDIATE` write transactions.

Each write transaction is one plain function run whole in aiosqlite's connection thread:
one hop to that thread instead of one per statement (a hop costs ~80 us, more than the
statements), and no other coroutine's statement can land inside the transaction."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from . import migrations
from .base import Storage
from .errors import EmailTaken, SchemaTooNew, UsernameTaken
from .models import (
    Counter,
    NewSession,
    PurgeResult,
    RefreshRequest,
    RefreshResult,
    Revocation,
    RevokeReason,
    User,
)
from .rotation import Action, TokenState, decide

WAL_ATTEMPTS = 50
_USER_COLUMNS = "id, username, email, password_hash, roles, created_at"
T = TypeVar("T")
_TOKEN_STATE = """
    SELECT t.session_id, s.expires_at, s.revoke_reason, t.retired_at,
           n.retired_at IS NOT NULL, u.id IS NOT NULL,
           u.id, u.username, u.email, u.password_hash, u.roles, u.created_at
    FROM refresh_tokens t
    JOIN sessions s ON s.id = t.session_id
    LEFT JOIN refresh_tokens n ON n.token_hash = t.successor_hash
    LEFT JOIN users u ON u.id = s.user_id
    WHERE t.token_hash = ?"""


class SQLiteStorage(Storage):
    def __init__(self, path: str, revocation_ttl: int) -> None:
        super().__init__(revocation_ttl)
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path != ":memory:":
            await asyncio.to_thread(
                Path(self.path).parent.mkdir, parents=True, exist_ok=True
            )
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await self._db.execute("PRAGMA busy_timeout = 10000")
            await self._use_wal()
            await self._db.execute("PRAGMA synchronous = NORMAL")
            await self._write(_migrate)
        except BaseException:
            await self.close()
            raise

    async def _use_wal(self) -> None:
        """Switch to WAL, so readers never wait for the writer. The switch can answer
        "locked" at once, without the busy timeout, while other processes open the same
        file: retry it for a while."""
        for attempt in range(WAL_ATTEMPTS):
            try:
                await self.db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "storage is not open"
        return self._db

    async def _write(self, work: Callable[..., T], *args: Any) -> T:
        """Run `work(connection, *args)` as one BEGIN IMMEDIATE transaction in the
        connection's thread. BEGIN IMMEDIATE takes the file's write lock up front, so
        processes queue (busy timeout) instead of deadlocking; the asyncio lock keeps
        this process's writers in order. aiosqlite has no public call for running a
        function in its thread: `_execute` is the one its own methods use."""
        db = self.db
        async with self._write_lock:
            return await db._execute(_transaction, db._conn, work, args)

    # users

    async def create_user(self, user: User) -> None:
        await self._write(_create_user, user)

    async def get_user(self, user_id: str) -> User | None:
        row = await _fetchone(
            self.db, f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
        )
        return _user(row)

    async def find_user(
        self, *, username: str | None = None, email: str | None = None
    ) -> User | None:
        column, value = (
            ("username_key", username) if username is not None else ("email_key", email)
        )
        row = await _fetchone(
            self.db,
            f"SELECT {_USER_COLUMNS} FROM users WHERE {column} = ?",
            (_key(value or ""),),
        )
        return _user(row)

    async def change_password(
        self, user_id: str, password_hash: str, keep_session_id: str | None, now: int
    ) -> list[str]:
        return await self._write(
            _change_password,
            user_id,
            password_hash,
            keep_session_id,
            now,
            self.revocation_ttl,
        )

    async def delete_user(self, user_id: str, now: int) -> list[str] | None:
        return await self._write(_delete_user, user_id, now, self.revocation_ttl)

    # sessions and refresh tokens

    async def create_session(self, session: NewSession) -> None:
        await self._write(_create_session, session)

    async def use_refresh_token(self, request: RefreshRequest) -> RefreshResult:
        return await self._write(_use_refresh_token, request, self.revocation_ttl)

    async def revoke_session(
        self, token_hash: bytes, reason: RevokeReason, now: int
    ) -> str | None:
        return await self._write(
            _revoke_session, token_hash, reason, now, self.revocation_ttl
        )

    async def live_revocations(self, now: int) -> list[Revocation]:
        rows = await self.db.execute_fetchall(
            "SELECT session_id, keep_until FROM revocations WHERE keep_until > ?",
            (now,),
        )
        return [Revocation(sid, until) for sid, until in rows]

    # counters

    async def hit_counter(self, key: str, window: int, now: int) -> Counter:
        return await self._write(_hit_counter, key, window, now)

    async def read_counter(self, key: str, now: int) -> Counter:
        row = await _fetchone(
            self.db,
            "SELECT count, reset_at FROM counters WHERE key = ? AND reset_at > ?",
            (key, now),
        )
        return Counter(row[0], row[1]) if row else Counter(0, now)

    async def delete_counter(self, key: str) -> None:
        await self._write(_execute, "DELETE FROM counters WHERE key = ?", (key,))

    # maintenance

    async def purge_expired(self, now: int, batch_size: int) -> PurgeResult:
        sessions, tokens = await self._write(_purge_sessions, now, batch_size)
        other = 0
        for table, column in (("revocations", "keep_until"), ("counters", "reset_at")):
            other += await self._write(
                _execute,
                f"DELETE FROM {table} WHERE rowid IN "
                f"(SELECT rowid FROM {table} WHERE {column} <= ? LIMIT ?)",
                (now, batch_size),
            )
        return PurgeResult(sessions, tokens, other)

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        return await self._write(_get_or_create_secret, name, candidate)


# Write transactions: plain functions run in the connection's thread by `_write`.

Connection = sqlite3.Connection


def _transaction(conn: Connection, work: Callable[..., T], args: tuple) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _execute(conn: Connection, sql: str, params: tuple) -> int:
    return conn.execute(sql, params).rowcount


def _migrate(conn: Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
    if current > migrations.LATEST:
        raise SchemaTooNew(migrations.too_new_message(current))
    for migration in migrations.pending(current):
        for statement in migration.sqlite:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?)", (migration.version,))


def _create_user(conn: Connection, user: User) -> None:
    taken = "SELECT 1 FROM users WHERE {} = ?"
    if conn.execute(taken.format("username_key"), (_key(user.username),)).fetchone():
        raise UsernameTaken(user.username)
    if conn.execute(taken.format("email_key"), (_key(user.email),)).fetchone():
        raise EmailTaken(user.email)
    conn.execute(
        "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            user.id,
            user.username,
            _key(user.username),
            user.email,
            _key(user.email),
            user.password_hash,
            ",".join(user.roles),
            user.created_at,
        ),
    )


def _change_password(
    conn: Connection,
    user_id: str,
    password_hash: str,
    keep_session_id: str | None,
    now: int,
    ttl: int,
) -> list[str]:
    cursor = conn.execute(
        "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
    )
    if cursor.rowcount == 0:
        return []
    return _revoke_user_sessions(
        conn, user_id, RevokeReason.PASSWORD_CHANGE, now, ttl, keep_session_id
    )


def _delete_user(
    conn: Connection, user_id: str, now: int, ttl: int
) -> list[str] | None:
    if conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
        return None
    return _revoke_user_sessions(conn, user_id, RevokeReason.USER_DELETED, now, ttl)


def _create_session(conn: Connection, session: NewSession) -> None:
    conn.execute(
        "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (session.id, session.user_id, session.created_at, session.expires_at),
    )
    conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (?, ?)",
        (session.token_hash, session.id),
    )


def _use_refresh_token(
    conn: Connection, request: RefreshRequest, ttl: int
) -> RefreshResult:
    row = conn.execute(_TOKEN_STATE, (request.token_hash,)).fetchone()
    state = _token_state(row)
    outcome, action = decide(state, request)
    if state is None:
        return RefreshResult(outcome)
    sid, now = state.session_id, request.now
    if action is Action.ROTATE:
        conn.execute(
            "UPDATE refresh_tokens SET retired_at = ?, successor_hash = ? WHERE token_hash = ?",
            (now, request.successor_hash, request.token_hash),
        )
        conn.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (?, ?)",
            (request.successor_hash, sid),
        )
        conn.execute(
            "UPDATE sessions SET expires_at = ? WHERE id = ?", (request.expires_at, sid)
        )
    elif action is Action.DELETE_SESSION:
        _delete_sessions(conn, [sid])
    elif action is Action.REVOKE_FOR_REUSE:
        _revoke(conn, [sid], RevokeReason.REUSE, now, ttl)
    elif action is Action.REVOKE_USER_GONE:
        _revoke(conn, [sid], RevokeReason.USER_DELETED, now, ttl)
    if not outcome.succeeded:
        return RefreshResult(outcome, session_id=sid)
    expires_at = (
        request.expires_at if action is Action.ROTATE else state.session_expires_at
    )
    return RefreshResult(outcome, _user(row[6:]), sid, expires_at)


def _revoke_session(
    conn: Connection, token_hash: bytes, reason: RevokeReason, now: int, ttl: int
) -> str | None:
    row = conn.execute(
        "SELECT s.id, s.revoked_at FROM refresh_tokens t "
        "JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = ?",
        (token_hash,),
    ).fetchone()
    if row is None:
        return None
    if row[1] is None:
        _revoke(conn, [row[0]], reason, now, ttl)
    return row[0]


def _hit_counter(conn: Connection, key: str, window: int, now: int) -> Counter:
    count, reset_at = conn.execute(
        """INSERT INTO counters (key, count, reset_at) VALUES (?, 1, ?)
        ON CONFLICT (key) DO UPDATE SET
            count = CASE WHEN reset_at <= ? THEN 1 ELSE count + 1 END,
            reset_at = CASE WHEN reset_at <= ? THEN excluded.reset_at ELSE reset_at END
        RETURNING count, reset_at""",
        (key, now + window, now, now),
    ).fetchone()
    return Counter(count, reset_at)


def _purge_sessions(conn: Connection, now: int, batch_size: int) -> tuple[int, int]:
    rows = conn.execute(
        "SELECT id FROM sessions WHERE expires_at <= ? LIMIT ?", (now, batch_size)
    ).fetchall()
    return len(rows), _delete_sessions(conn, [r[0] for r in rows])


def _get_or_create_secret(conn: Connection, name: str, candidate: bytes) -> bytes:
    conn.execute(
        "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (name, candidate),
    )
    return bytes(
        conn.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0]
    )


def _revoke_user_sessions(
    conn: Connection,
    user_id: str,
    reason: RevokeReason,
    now: int,
    ttl: int,
    keep_session_id: str | None = None,
) -> list[str]:
    rows = conn.execute(
        "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?",
        (user_id, keep_session_id),
    ).fetchall()
    sids = [r[0] for r in rows]
    _revoke(conn, sids, reason, now, ttl)
    return sids


def _revoke(
    conn: Connection, sids: list[str], reason: RevokeReason, now: int, ttl: int
) -> None:
    conn.executemany(
        "UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ?",
        [(now, str(reason), sid) for sid in sids],
    )
    conn.executemany(
        "INSERT INTO revocations (session_id, keep_until) VALUES (?, ?) "
        "ON CONFLICT (session_id) DO UPDATE SET keep_until = excluded.keep_until",
        [(sid, now + ttl) for sid in sids],
    )


def _delete_sessions(conn: Connection, sids: list[str]) -> int:
    if not sids:
        return 0
    marks = ",".join("?" * len(sids))
    tokens = conn.execute(
        f"DELETE FROM refresh_tokens WHERE session_id IN ({marks})", sids
    )
    conn.execute(f"DELETE FROM sessions WHERE id IN ({marks})", sids)
    return tokens.rowcount


def _key(text: str) -> str:
    """Uniqueness key of usernames and emails: equal without regard to case."""
    return text.casefold()


async def _fetchone(
    db: aiosqlite.Connection, sql: str, params: Iterable[object] = ()
) -> sqlite3.Row | tuple | None:
    async with db.execute(sql, tuple(params)) as cursor:
        return await cursor.fetchone()


def _user(row: tuple | None) -> User | None:
    if row is None:
        return None
    user_id, username, email, password_hash, roles, created_at = row
    return User(
        user_id,
        username,
        email,
        password_hash,
        tuple(roles.split(",")) if roles else (),
        created_at,
    )


def _token_state(row: tuple | None) -> TokenState | None:
    if row is None:
        return None
    return TokenState(
        session_id=row[0],
        session_expires_at=row[1],
        revoke_reason=row[2],
        retired_at=row[3],
        successor_presented=bool(row[4]),
        user_exists=bool(row[5]),
    )
