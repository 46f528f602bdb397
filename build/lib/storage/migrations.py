"""The ordered schema versions of the SQL backends: the one place that lists them.

Each backend applies, in one transaction each, every version above the one recorded in
`schema_version`, and refuses to start against a version newer than `LATEST`.
Times are integer epoch seconds: comparing date text is a classic expiry bug.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


def _initial_schema(blob: str, token_table_suffix: str) -> tuple[str, ...]:
    """Version 1 in one dialect: `blob` is the binary column type."""
    return (
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
        f"""CREATE TABLE refresh_tokens (
            token_hash {blob} PRIMARY KEY,
            session_id TEXT NOT NULL,
            retired_at BIGINT,
            successor_hash {blob}
        ){token_table_suffix}""",
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
        f"CREATE TABLE secrets (name TEXT PRIMARY KEY, value {blob} NOT NULL)",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "users, sessions, refresh tokens, revocations, counters, secrets",
        sqlite=_initial_schema("BLOB", " WITHOUT ROWID"),
        postgres=_initial_schema("BYTEA", ""),
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
