"""PostgreSQL backend on asyncpg: a connection pool shared by the process, READ COMMITTED
transactions, and row locks on `sessions` so that many processes can share one database.

Locking rule: every change to a session or to its refresh tokens is made while holding
the session's row lock, so locking the session alone serialises all work on its tokens.
Locks are taken in one order (user row, then sessions, then their tokens and revocations)
and the purge skips locked rows, so transactions never wait on each other in a cycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from . import migrations
from .base import Storage
from .errors import EmailTaken, SchemaTooNew, StorageError, UsernameTaken
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

_Conn = PoolConnectionProxy

# Any constant works: it only has to be the same in every process running the migrations.
_MIGRATION_LOCK = 0x6A77_7461_7574_6800  # "jwtauth\0"

_USER_COLUMNS = "id, username, email, password_hash, roles, created_at"

# Locks the session of a token. The state is then read by a second statement: under READ
# COMMITTED a statement that waited for a row lock re-reads only the locked rows, while a
# new statement sees everything committed before it began (retired_at, the successor).
_LOCK_SESSION = """
    SELECT s.id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
    WHERE t.token_hash = $1 FOR UPDATE OF s"""

_REFRESH_STATE = """
    SELECT t.session_id, s.expires_at, s.revoke_reason, t.retired_at,
           n.retired_at IS NOT NULL AS successor_presented,
           u.id, u.username, u.email, u.password_hash, u.roles, u.created_at
    FROM refresh_tokens t
    JOIN sessions s ON s.id = t.session_id
    LEFT JOIN refresh_tokens n ON n.token_hash = t.successor_hash
    LEFT JOIN users u ON u.id = s.user_id
    WHERE t.token_hash = $1"""

_ROTATE = """
    WITH retired AS (
        UPDATE refresh_tokens SET retired_at = $2, successor_hash = $3 WHERE token_hash = $1
    ), successor AS (
        INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($3, $4)
    )
    UPDATE sessions SET expires_at = $5 WHERE id = $4"""


def _revoke_sql(where: str) -> str:
    """Revoke the live sessions matching `where` and record their revocations, in one
    statement returning the revoked ids: $1 the target, $2 now, $3 the reason,
    $4 keep_until (and $5 in `where`, if used)."""
    return f"""
    WITH revoked AS (
        UPDATE sessions SET revoked_at = $2, revoke_reason = $3
        WHERE {where} AND revoked_at IS NULL
        RETURNING id
    )
    INSERT INTO revocations (session_id, keep_until) SELECT id, $4 FROM revoked
    ON CONFLICT (session_id) DO UPDATE SET keep_until = excluded.keep_until
    RETURNING session_id"""


_REVOKE_SESSION = _revoke_sql("id = $1")
_REVOKE_USER = _revoke_sql("user_id = $1 AND id IS DISTINCT FROM $5")

_DELETE_SESSIONS = """
    WITH tokens AS (
        DELETE FROM refresh_tokens WHERE session_id = ANY($1::text[]) RETURNING 1
    ), gone AS (
        DELETE FROM sessions WHERE id = ANY($1::text[]) RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM tokens)"""

# SKIP LOCKED: sessions being refreshed, and batches taken by another purging process, are
# left for the next pass instead of waited for.
_PURGE_SESSIONS = """
    WITH doomed AS MATERIALIZED (
        SELECT id FROM sessions WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED
    ), tokens AS (
        DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM doomed) RETURNING 1
    ), gone AS (
        DELETE FROM sessions WHERE id IN (SELECT id FROM doomed) RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM tokens)"""


def _purge_sql(table: str, key: str, column: str) -> str:
    return (
        f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} "
        f"WHERE {column} <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
    )


_PURGE_OTHER = (
    _purge_sql("revocations", "session_id", "keep_until"),
    _purge_sql("counters", "key", "reset_at"),
)

_HIT_COUNTER = """
    INSERT INTO counters AS c (key, count, reset_at) VALUES ($1, 1, $2)
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN c.reset_at <= $3 THEN 1 ELSE c.count + 1 END,
        reset_at = CASE WHEN c.reset_at <= $3 THEN excluded.reset_at ELSE c.reset_at END
    RETURNING count, reset_at"""


class PostgresStorage(Storage):
    def __init__(self, dsn: str, revocation_ttl: int, *, pool_size: int = 10) -> None:
        super().__init__(revocation_ttl)
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size)
        try:
            await self._migrate(pool)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None, "storage is not open"
        return self._pool

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Conn]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        """The advisory lock makes processes starting together wait for the first one's
        migration, then find it done; it is released with the transaction."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            current = await conn.fetchval(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version"
            )
            if current > migrations.LATEST:
                raise SchemaTooNew(migrations.too_new_message(current))
            for migration in migrations.pending(current):
                for statement in migration.postgres:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version VALUES ($1)", migration.version
                )

    # users

    async def create_user(self, user: User) -> None:
        inserted = await self.pool.fetchval(
            "INSERT INTO users VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT DO NOTHING RETURNING true",
            user.id,
            user.username,
            _key(user.username),
            user.email,
            _key(user.email),
            user.password_hash,
            ",".join(user.roles),
            user.created_at,
        )
        if not inserted:
            await self._raise_taken(user)

    async def _raise_taken(self, user: User) -> None:
        """Which clash to report, looked up after the insert did nothing: the username
        wins when both clash. ON CONFLICT waited for any concurrent insert of the same
        key to commit, so this read sees the row the insert clashed with."""
        username_taken, email_taken = await self.pool.fetchrow(
            "SELECT EXISTS (SELECT 1 FROM users WHERE username_key = $1), "
            "EXISTS (SELECT 1 FROM users WHERE email_key = $2)",
            _key(user.username),
            _key(user.email),
        )
        if username_taken:
            raise UsernameTaken(user.username)
        if email_taken:
            raise EmailTaken(user.email)
        raise StorageError(f"user {user.id} was not inserted: its id is taken")

    async def get_user(self, user_id: str) -> User | None:
        if not _storable(user_id):
            return None
        row = await self.pool.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id
        )
        return _user(row)

    async def find_user(
        self, *, username: str | None = None, email: str | None = None
    ) -> User | None:
        column, value = (
            ("username_key", username) if username is not None else ("email_key", email)
        )
        if not _storable(value or ""):
            return None
        row = await self.pool.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE {column} = $1", _key(value or "")
        )
        return _user(row)

    async def change_password(
        self, user_id: str, password_hash: str, keep_session_id: str | None, now: int
    ) -> list[str]:
        if not _storable(user_id):
            return []
        async with self._transaction() as conn:
            status = await conn.execute(
                "UPDATE users SET password_hash = $1 WHERE id = $2",
                password_hash,
                user_id,
            )
            if status == "UPDATE 0":
                return []
            return await self._revoke_user_sessions(
                conn, user_id, RevokeReason.PASSWORD_CHANGE, now, keep_session_id
            )

    async def delete_user(self, user_id: str, now: int) -> list[str] | None:
        if not _storable(user_id):
            return None
        async with self._transaction() as conn:
            status = await conn.execute("DELETE FROM users WHERE id = $1", user_id)
            if status == "DELETE 0":
                return None
            return await self._revoke_user_sessions(
                conn, user_id, RevokeReason.USER_DELETED, now
            )

    # sessions and refresh tokens

    async def create_session(self, session: NewSession) -> None:
        await self.pool.execute(
            """WITH s AS (
                INSERT INTO sessions (id, user_id, created_at, expires_at)
                VALUES ($1, $2, $3, $4)
            )
            INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($5, $1)""",
            session.id,
            session.user_id,
            session.created_at,
            session.expires_at,
            session.token_hash,
        )

    async def use_refresh_token(self, request: RefreshRequest) -> RefreshResult:
        async with self._transaction() as conn:
            locked = await conn.fetchval(_LOCK_SESSION, request.token_hash)
            row = (
                await conn.fetchrow(_REFRESH_STATE, request.token_hash)
                if locked
                else None
            )
            state = _token_state(row)
            outcome, action = decide(state, request)
            if state is None:
                return RefreshResult(outcome)
            await self._apply(conn, action, state, request)
            if not outcome.succeeded:
                return RefreshResult(outcome, session_id=state.session_id)
            expires_at = (
                request.expires_at
                if action is Action.ROTATE
                else state.session_expires_at
            )
            return RefreshResult(outcome, _user(row[5:]), state.session_id, expires_at)

    async def _apply(
        self, conn: _Conn, action: Action, state: TokenState, request: RefreshRequest
    ) -> None:
        sid, now = state.session_id, request.now
        if action is Action.ROTATE:
            await conn.execute(
                _ROTATE,
                request.token_hash,
                now,
                request.successor_hash,
                sid,
                request.expires_at,
            )
        elif action is Action.DELETE_SESSION:
            await conn.fetchrow(_DELETE_SESSIONS, [sid])
        elif action is Action.REVOKE_FOR_REUSE:
            await self._revoke_session(conn, sid, RevokeReason.REUSE, now)
        elif action is Action.REVOKE_USER_GONE:
            await self._revoke_session(conn, sid, RevokeReason.USER_DELETED, now)

    async def revoke_session(
        self, token_hash: bytes, reason: RevokeReason, now: int
    ) -> str | None:
        async with self._transaction() as conn:
            sid = await conn.fetchval(_LOCK_SESSION, token_hash)
            if sid is not None:
                await self._revoke_session(conn, sid, reason, now)
            return sid

    async def live_revocations(self, now: int) -> list[Revocation]:
        rows = await self.pool.fetch(
            "SELECT session_id, keep_until FROM revocations WHERE keep_until > $1", now
        )
        return [Revocation(sid, until) for sid, until in rows]

    # counters

    async def hit_counter(self, key: str, window: int, now: int) -> Counter:
        count, reset_at = await self.pool.fetchrow(
            _HIT_COUNTER, _counter_key(key), now + window, now
        )
        return Counter(count, reset_at)

    async def read_counter(self, key: str, now: int) -> Counter:
        row = await self.pool.fetchrow(
            "SELECT count, reset_at FROM counters WHERE key = $1 AND reset_at > $2",
            _counter_key(key),
            now,
        )
        return Counter(row[0], row[1]) if row else Counter(0, now)

    async def delete_counter(self, key: str) -> None:
        await self.pool.execute(
            "DELETE FROM counters WHERE key = $1", _counter_key(key)
        )

    # maintenance

    async def purge_expired(self, now: int, batch_size: int) -> PurgeResult:
        sessions, tokens = await self.pool.fetchrow(_PURGE_SESSIONS, now, batch_size)
        other = 0
        for statement in _PURGE_OTHER:
            status = await self.pool.execute(statement, now, batch_size)
            other += int(status.split()[-1])
        return PurgeResult(sessions, tokens, other)

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        # Two statements: the SELECT's fresh snapshot sees a row that a concurrent
        # process committed while our INSERT waited on it.
        await self.pool.execute(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            name,
            candidate,
        )
        return bytes(
            await self.pool.fetchval("SELECT value FROM secrets WHERE name = $1", name)
        )

    # helpers, called inside a transaction

    async def _revoke_session(
        self, conn: _Conn, sid: str, reason: RevokeReason, now: int
    ) -> None:
        await conn.execute(
            _REVOKE_SESSION, sid, now, str(reason), now + self.revocation_ttl
        )

    async def _revoke_user_sessions(
        self,
        conn: _Conn,
        user_id: str,
        reason: RevokeReason,
        now: int,
        keep_session_id: str | None = None,
    ) -> list[str]:
        rows = await conn.fetch(
            _REVOKE_USER,
            user_id,
            now,
            str(reason),
            now + self.revocation_ttl,
            keep_session_id,
        )
        return [row[0] for row in rows]


def _key(text: str) -> str:
    """Uniqueness key of usernames and emails: equal without regard to case."""
    return text.casefold()


def _user(row: asyncpg.Record | tuple | None) -> User | None:
    if row is None or row[0] is None:
        return None
    user_id, username, email, password_hash, roles, created_at = row
    role_names = tuple(roles.split(",")) if roles else ()
    return User(user_id, username, email, password_hash, role_names, created_at)


def _token_state(row: asyncpg.Record | None) -> TokenState | None:
    if row is None:
        return None
    return TokenState(
        session_id=row[0],
        session_expires_at=row[1],
        revoke_reason=row[2],
        retired_at=row[3],
        successor_presented=row[4],
        user_exists=row[5] is not None,
    )


def _storable(text: str) -> bool:
    """PostgreSQL text cannot hold NUL: no stored value has one, so a lookup of one finds
    nothing (instead of failing the request)."""
    return "\x00" not in text


def _counter_key(key: str) -> str:
    """Counter keys may hold any character; NUL is escaped (see _storable)."""
    return key.replace("\\", "\\\\").replace("\x00", "\\0")
