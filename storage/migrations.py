"""The ordered schema versions of the SQL backends: the one place that lists them.

`migrate` applies, in one transaction, every version above the one recorded in
`schema_version`, and refuses to start against a version newer than `LATEST`. A version
is SQL (rendered per database by the dialect: `{blob}`, `{serial_pk}`...) and optionally a
Python step, a plan like any other, for what SQL cannot compute (canonical keys).
Times are integer epoch seconds (retirements: milliseconds): comparing date text is a
classic expiry bug.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import SchemaTooNew
from .identity import email_key, username_key
from .sqlkit import BEGIN, Ctx, Plan, all_rows, many, one, run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    python: Callable[[Ctx], Plan[None]] | None = None


_INITIAL_SCHEMA = (
    """CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        username_key TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        roles TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )""",
    # No foreign key to users: a deleted user's sessions stay, revoked, until expiry.
    """CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        revoked_at BIGINT,
        revoke_reason TEXT
    )""",
    "CREATE INDEX sessions_user ON sessions (user_id)",
    "CREATE INDEX sessions_expiry ON sessions (expires_at)",
    """CREATE TABLE refresh_tokens (
        token_hash {blob} PRIMARY KEY,
        session_id TEXT NOT NULL,
        retired_at BIGINT,
        successor_hash {blob}
    ){without_rowid}""",
    "CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id)",
    """CREATE TABLE revocations (
        session_id TEXT PRIMARY KEY,
        keep_until BIGINT NOT NULL
    )""",
    "CREATE INDEX revocations_keep ON revocations (keep_until)",
    """CREATE TABLE counters (
        key TEXT PRIMARY KEY,
        count BIGINT NOT NULL,
        reset_at BIGINT NOT NULL
    )""",
    "CREATE INDEX counters_reset ON counters (reset_at)",
    "CREATE TABLE secrets (name TEXT PRIMARY KEY, value {blob} NOT NULL)",
)

_ACCOUNTS_AND_DEVICES = (
    "ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE",
    "ALTER TABLE users ADD COLUMN display_name TEXT",
    "CREATE INDEX users_created ON users (created_at, id)",
    # NULL in rows of version 1: read as created_at.
    "ALTER TABLE sessions ADD COLUMN last_used_at BIGINT",
    "ALTER TABLE sessions ADD COLUMN user_agent TEXT",
    "ALTER TABLE sessions ADD COLUMN ip TEXT",
    # Retirement in milliseconds: the reuse interval is exact to the second.
    "UPDATE refresh_tokens SET retired_at = retired_at * 1000 "
    "WHERE retired_at IS NOT NULL",
    "ALTER TABLE refresh_tokens RENAME COLUMN retired_at TO retired_ms",
    "CREATE INDEX refresh_tokens_retired ON refresh_tokens (retired_ms) "
    "WHERE retired_ms IS NOT NULL",
    # An append-only log read by sequence number (revocations_since).
    """CREATE TABLE revocation_log (
        seq {serial_pk},
        session_id TEXT NOT NULL,
        keep_until BIGINT NOT NULL
    )""",
    "INSERT INTO revocation_log (session_id, keep_until) "
    "SELECT session_id, keep_until FROM revocations ORDER BY keep_until, session_id",
    "DROP TABLE revocations",
    "ALTER TABLE revocation_log RENAME TO revocations",
    "CREATE INDEX revocations_keep ON revocations (keep_until)",
)


# canonical keys (issue 16.5)

_TEMPORARY = "\x01rekey:"  # no canonical key starts with a control character


def assign_keys(
    rows: Iterable[tuple[str, str, str]], key: Callable[[str], str], what: str
) -> dict[str, str]:
    """The key each user gets: rows are (id, text, current key), oldest user first. Each
    gets the canonical key of its text unless an older user has it already; then it
    keeps its current key, so both accounts keep working (the later one no longer found
    by that spelling), and a warning says so."""
    taken: set[str] = set()
    chosen: dict[str, str] = {}
    for user_id, text, current in rows:
        wanted = key(text)
        candidate = wanted
        suffix = 0
        while candidate in taken:
            candidate = current if suffix == 0 else f"{current}#{user_id}{'#' * suffix}"
            suffix += 1
        if candidate != wanted:
            logger.warning(
                "user %s keeps its old %s key: its canonical key is another user's",
                user_id,
                what,
            )
        taken.add(candidate)
        chosen[user_id] = candidate
    return chosen


def rekey_users(c: Ctx) -> Plan[None]:
    """Recompute every user's canonical keys. Rows that change move to a temporary key
    first, so that no intermediate state breaks the UNIQUE constraints."""
    rows = yield all_rows(
        "SELECT id, username, username_key, email, email_key FROM users "
        "ORDER BY created_at, id"
    )
    for column, text_at, key_at, key in (
        ("username_key", 1, 2, username_key),
        ("email_key", 3, 4, email_key),
    ):
        current = {row[0]: row[key_at] for row in rows}
        chosen = assign_keys(
            ((row[0], row[text_at], row[key_at]) for row in rows), key, column
        )
        changed = [(k, uid) for uid, k in chosen.items() if k != current[uid]]
        if changed:
            update = c.q(f"UPDATE users SET {column} = $1 WHERE id = $2")
            yield many(update, [(_TEMPORARY + uid, uid) for _, uid in changed])
            yield many(update, changed)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "users, sessions, refresh tokens, revocations, counters, secrets",
        _INITIAL_SCHEMA,
    ),
    Migration(
        2,
        "disabled users, session devices and last use, retirement in ms, "
        "revocation log, canonical keys",
        _ACCOUNTS_AND_DEVICES,
        rekey_users,
    ),
)

LATEST = MIGRATIONS[-1].version


def pending(current: int) -> list[Migration]:
    """The migrations to apply to a database at version `current`, in order."""
    return [m for m in MIGRATIONS if m.version > current]


def too_new_message(found: int) -> str:
    return (
        f"The database schema is version {found}, newer than this server knows "
        f"(up to {LATEST}). Upgrade the server or point it at another database."
    )


def migrate(c: Ctx, up_to: int = LATEST) -> Plan[None]:
    """Bring the schema to `up_to` in one transaction. On PostgreSQL a transaction lock
    makes processes starting together wait for the first one's migration, then find it
    done."""
    yield BEGIN
    lock = c.dialect.locks.get("migrations")
    if lock:
        yield one(lock)
    yield run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    (current,) = yield one("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    if current > LATEST:
        raise SchemaTooNew(too_new_message(current))
    for migration in pending(current):
        if migration.version > up_to:
            break
        for statement in migration.statements:
            yield run(c.q(statement))
        if migration.python is not None:
            yield from migration.python(c)
        yield run(c.q("INSERT INTO schema_version VALUES ($1)"), migration.version)
