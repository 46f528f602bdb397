"""SQLite backend on aiosqlite: one connection per process, WAL so that several worker
processes can share the file, short `BEGIN IMMEDIATE` write transactions."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

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
_TOKEN_STATE = """
    SELECT t.session_id, s.expires_at, s.revoke_reason, t.retired_at,
           n.retired_at IS NOT NULL, u.id IS NOT NULL, s.user_id
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
            await self._migrate()
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

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction. The lock keeps this process's coroutines from
        interleaving statements on the shared connection; BEGIN IMMEDIATE takes the
        file's write lock up front, so processes queue instead of deadlocking."""
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            await self.db.execute("COMMIT")

    async def _migrate(self) -> None:
        async with self._transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            row = await _fetchone(db, "SELECT MAX(version) FROM schema_version")
            current = row[0] or 0
            if current > migrations.LATEST:
                raise SchemaTooNew(migrations.too_new_message(current))
            for migration in migrations.pending(current):
                for statement in migration.sqlite:
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_version VALUES (?)", (migration.version,)
                )

    # users

    async def create_user(self, user: User) -> None:
        async with self._transaction() as db:
            if await _fetchone(
                db, "SELECT 1 FROM users WHERE username_key = ?", (_key(user.username),)
            ):
                raise UsernameTaken(user.username)
            if await _fetchone(
                db, "SELECT 1 FROM users WHERE email_key = ?", (_key(user.email),)
            ):
                raise EmailTaken(user.email)
            await db.execute(
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
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?",
                (password_hash, user_id),
            )
            if cursor.rowcount == 0:
                return []
            return await self._revoke_user_sessions(
                db, user_id, RevokeReason.PASSWORD_CHANGE, now, keep_session_id
            )

    async def delete_user(self, user_id: str, now: int) -> list[str] | None:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            if cursor.rowcount == 0:
                return None
            return await self._revoke_user_sessions(
                db, user_id, RevokeReason.USER_DELETED, now
            )

    # sessions and refresh tokens

    async def create_session(self, session: NewSession) -> None:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (session.id, session.user_id, session.created_at, session.expires_at),
            )
            await db.execute(
                "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (?, ?)",
                (session.token_hash, session.id),
            )

    async def use_refresh_token(self, request: RefreshRequest) -> RefreshResult:
        async with self._transaction() as db:
            row = await _fetchone(db, _TOKEN_STATE, (request.token_hash,))
            state = _token_state(row)
            outcome, action = decide(state, request)
            if state is None:
                return RefreshResult(outcome)
            await self._apply(db, action, state, request)
            if not outcome.succeeded:
                return RefreshResult(outcome, session_id=state.session_id)
            user = await self._user_in(db, row[6])
            expires_at = (
                request.expires_at
                if action is Action.ROTATE
                else state.session_expires_at
            )
            return RefreshResult(outcome, user, state.session_id, expires_at)

    async def _apply(
        self,
        db: aiosqlite.Connection,
        action: Action,
        state: TokenState,
        request: RefreshRequest,
    ) -> None:
        sid, now = state.session_id, request.now
        if action is Action.ROTATE:
            await db.execute(
                "UPDATE refresh_tokens SET retired_at = ?, successor_hash = ? WHERE token_hash = ?",
                (now, request.successor_hash, request.token_hash),
            )
            await db.execute(
                "INSERT INTO refresh_tokens (token_hash, session_id) VALUES (?, ?)",
                (request.successor_hash, sid),
            )
            await db.execute(
                "UPDATE sessions SET expires_at = ? WHERE id = ?",
                (request.expires_at, sid),
            )
        elif action is Action.DELETE_SESSION:
            await self._delete_sessions(db, [sid])
        elif action is Action.REVOKE_FOR_REUSE:
            await self._revoke(db, [sid], RevokeReason.REUSE, now)
        elif action is Action.REVOKE_USER_GONE:
            await self._revoke(db, [sid], RevokeReason.USER_DELETED, now)

    async def revoke_session(
        self, token_hash: bytes, reason: RevokeReason, now: int
    ) -> str | None:
        async with self._transaction() as db:
            row = await _fetchone(
                db,
                "SELECT s.id, s.revoked_at FROM refresh_tokens t "
                "JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = ?",
                (token_hash,),
            )
            if row is None:
                return None
            if row[1] is None:
                await self._revoke(db, [row[0]], reason, now)
            return row[0]

    async def live_revocations(self, now: int) -> list[Revocation]:
        rows = await self.db.execute_fetchall(
            "SELECT session_id, keep_until FROM revocations WHERE keep_until > ?",
            (now,),
        )
        return [Revocation(sid, until) for sid, until in rows]

    # counters

    async def hit_counter(self, key: str, window: int, now: int) -> Counter:
        async with self._transaction() as db:
            row = await _fetchone(
                db,
                """INSERT INTO counters (key, count, reset_at) VALUES (?, 1, ?)
                ON CONFLICT (key) DO UPDATE SET
                    count = CASE WHEN reset_at <= ? THEN 1 ELSE count + 1 END,
                    reset_at = CASE WHEN reset_at <= ? THEN excluded.reset_at ELSE reset_at END
                RETURNING count, reset_at""",
                (key, now + window, now, now),
            )
        return Counter(row[0], row[1])

    async def read_counter(self, key: str, now: int) -> Counter:
        row = await _fetchone(
            self.db,
            "SELECT count, reset_at FROM counters WHERE key = ? AND reset_at > ?",
            (key, now),
        )
        return Counter(row[0], row[1]) if row else Counter(0, now)

    async def delete_counter(self, key: str) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM counters WHERE key = ?", (key,))

    # maintenance

    async def purge_expired(self, now: int, batch_size: int) -> PurgeResult:
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT id FROM sessions WHERE expires_at <= ? LIMIT ?",
                (now, batch_size),
            )
            tokens = await self._delete_sessions(db, [r[0] for r in rows])
        other = 0
        for table, column in (("revocations", "keep_until"), ("counters", "reset_at")):
            async with self._transaction() as db:
                cursor = await db.execute(
                    f"DELETE FROM {table} WHERE rowid IN "
                    f"(SELECT rowid FROM {table} WHERE {column} <= ? LIMIT ?)",
                    (now, batch_size),
                )
                other += cursor.rowcount
        return PurgeResult(len(rows), tokens, other)

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, candidate),
            )
            row = await _fetchone(
                db, "SELECT value FROM secrets WHERE name = ?", (name,)
            )
        return bytes(row[0])

    # helpers, called inside a transaction

    async def _user_in(self, db: aiosqlite.Connection, user_id: str) -> User | None:
        row = await _fetchone(
            db, f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)
        )
        return _user(row)

    async def _revoke_user_sessions(
        self,
        db: aiosqlite.Connection,
        user_id: str,
        reason: RevokeReason,
        now: int,
        keep_session_id: str | None = None,
    ) -> list[str]:
        rows = await db.execute_fetchall(
            "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?",
            (user_id, keep_session_id),
        )
        sids = [r[0] for r in rows]
        await self._revoke(db, sids, reason, now)
        return sids

    async def _revoke(
        self, db: aiosqlite.Connection, sids: list[str], reason: RevokeReason, now: int
    ) -> None:
        await db.executemany(
            "UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ?",
            [(now, str(reason), sid) for sid in sids],
        )
        await db.executemany(
            "INSERT INTO revocations (session_id, keep_until) VALUES (?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET keep_until = excluded.keep_until",
            [(sid, now + self.revocation_ttl) for sid in sids],
        )

    async def _delete_sessions(self, db: aiosqlite.Connection, sids: list[str]) -> int:
        if not sids:
            return 0
        marks = ",".join("?" * len(sids))
        cursor = await db.execute(
            f"DELETE FROM refresh_tokens WHERE session_id IN ({marks})", sids
        )
        await db.execute(f"DELETE FROM sessions WHERE id IN ({marks})", sids)
        return cursor.rowcount


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
