"""Every transaction of the SQL backends, written once: SQL text and decisions.

Each function is a plan (see sqlkit): it yields statements, receives their results and
returns the storage method's answer. Reads come first and write nothing; a plan that must
write yields BEGIN (one transaction) or WRITE (one statement standing alone).

PostgreSQL locking rules, kept by the plans on every database:
- every change to a session or its refresh tokens is made holding the session's row
  lock (_LOCK_SESSION, or the UPDATE's own lock), so locking the session alone
  serialises all work on its tokens;
- every change of a user row comes before the changes to its sessions (user row, then
  sessions, then their tokens and revocations), and session creation holds the user row
  in share mode, so a sign-in cannot slip a session past a password change, a disable
  or a deletion;
- purges skip locked rows, so transactions never wait on each other in a cycle.
"""

from __future__ import annotations

from .accounts import needs_another_admin, revoke_reason, updated
from .errors import EmailTaken, LastAdmin, StorageError, UsernameTaken
from .identity import email_key, username_key
from .models import (
    Counter,
    NewSession,
    RefreshRequest,
    RefreshResult,
    Revocation,
    RevokedSession,
    RevokeReason,
    SessionInfo,
    User,
    UserUpdate,
)
from .rotation import Action, TokenState, decide, epoch_ms
from .sqlkit import BEGIN, WRITE, Ctx, Plan, all_rows, many, one, run

USER_COLUMNS = (
    "id, username, email, password_hash, roles, created_at, disabled, display_name"
)
_USER_BY_ID = f"SELECT {USER_COLUMNS} FROM users WHERE id = $1"
_USER_BY_ID_LOCKED = _USER_BY_ID + "{for_update}"


# rows


def user_from(row: tuple | None, start: int = 0) -> User | None:
    """A user from the USER_COLUMNS of a row, starting at `start` (None when absent, as
    in a LEFT JOIN that found no user)."""
    if row is None or row[start] is None:
        return None
    user_id, username, email, password_hash, roles, created_at, disabled, display = row[
        start : start + 8
    ]
    return User(
        user_id,
        username,
        email,
        password_hash,
        tuple(roles.split(",")) if roles else (),
        created_at,
        bool(disabled),
        display,
    )


def _roles_text(roles: tuple[str, ...]) -> str:
    return ",".join(roles)


def _revoke_sql(where: str) -> str:
    """Revoke the unrevoked sessions matching `where` ($3 on), returning their ids."""
    return f"""UPDATE sessions SET revoked_at = $1, revoke_reason = $2
        WHERE {where} AND revoked_at IS NULL RETURNING id"""


_REVOKE_SESSION = _revoke_sql("id = $3")
_REVOKE_LIVE_SESSION_OF = _revoke_sql("id = $3 AND user_id = $4 AND expires_at > $5")
_REVOKE_USER = _revoke_sql("user_id = $3")
_REVOKE_USER_BUT = _revoke_sql("user_id = $3 AND id <> $4")
_REVOKE_LIVE_OTHERS = _revoke_sql(
    "user_id = $3 AND id IS DISTINCT FROM $4 AND expires_at > $5"
)
_RECORD_REVOCATION = "INSERT INTO revocations (session_id, keep_until) VALUES ($1, $2)"


# users


def ping(c: Ctx) -> Plan[None]:
    yield one("SELECT 1")


def get_user(c: Ctx, user_id: str) -> Plan[User | None]:
    return user_from((yield one(c.q(_USER_BY_ID), user_id)))


_FIND_BY = {
    column: f"SELECT {USER_COLUMNS} FROM users WHERE {column} = $1"
    for column in ("username_key", "email_key")
}
_FIND_BY_EITHER = {
    column: f"SELECT {USER_COLUMNS}, {column} FROM users WHERE {column} IN ($1, $2)"
    for column in ("username_key", "email_key")
}


def find_user(c: Ctx, column: str, keys: tuple[str, ...]) -> Plan[User | None]:
    """The user holding the first of `keys` that someone holds (identity.lookup_keys)."""
    if len(keys) == 1:
        return user_from((yield one(c.q(_FIND_BY[column]), keys[0])))
    rows = yield all_rows(c.q(_FIND_BY_EITHER[column]), *keys)
    by_key = {row[-1]: row for row in rows}
    found = next((by_key[key] for key in keys if key in by_key), None)
    return user_from(found)


_INSERT_USER = """
    INSERT INTO users (id, username, username_key, email, email_key, password_hash,
                       roles, created_at, disabled, display_name)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT DO NOTHING RETURNING id"""

_KEYS_TAKEN = """
    SELECT EXISTS (SELECT 1 FROM users WHERE username_key = $1),
           EXISTS (SELECT 1 FROM users WHERE email_key = $2)"""


def create_user(c: Ctx, user: User) -> Plan[None]:
    """The insert skips any clash; which one it was is looked up afterwards (the username
    wins when both clash). On PostgreSQL, ON CONFLICT waited for a concurrent insert of
    the same key to commit, and the next statement's snapshot sees that row."""
    ukey, ekey = username_key(user.username), email_key(user.email)
    yield BEGIN
    inserted = yield one(
        c.q(_INSERT_USER),
        user.id,
        user.username,
        ukey,
        user.email,
        ekey,
        user.password_hash,
        _roles_text(user.roles),
        user.created_at,
        user.disabled,
        user.display_name,
    )
    if inserted is not None:
        return
    username_taken, email_taken = yield one(c.q(_KEYS_TAKEN), ukey, ekey)
    if username_taken:
        raise UsernameTaken(user.username)
    if email_taken:
        raise EmailTaken(user.email)
    raise StorageError(f"user {user.id} was not inserted: its id is taken")


def list_users_sql(after: bool, query: bool) -> str:
    """The page query; parameters are numbered in the order: after (2), query, limit."""
    conditions, n = [], 1
    if after:
        conditions.append("(created_at, id) > ($1, $2)")
        n = 3
    if query:
        like = f"LIKE ${n} ESCAPE '\\'"
        conditions.append(f"(username_key {like} OR email_key {like})")
        n += 1
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT {USER_COLUMNS} FROM users{where} ORDER BY created_at, id LIMIT ${n}"


_LIST_USERS = {
    (after, query): list_users_sql(after, query)
    for after in (False, True)
    for query in (False, True)
}


def like_pattern(query: str) -> str:
    """A substring pattern that matches `query` literally, compared by key."""
    text = username_key(query)
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def list_users(
    c: Ctx, limit: int, after: tuple[int, str] | None, query: str | None
) -> Plan[list[User]]:
    args: list[object] = []
    if after is not None:
        args += [after[0], after[1]]
    if query:
        args.append(like_pattern(query))
    args.append(limit)
    sql = _LIST_USERS[(after is not None, bool(query))]
    rows = yield all_rows(c.q(sql), *args)
    return [user for row in rows if (user := user_from(row)) is not None]


_ANOTHER_ENABLED_ADMIN = """
    SELECT EXISTS (SELECT 1 FROM users WHERE id <> $1 AND NOT disabled
                   AND (',' || roles || ',') LIKE '%,admin,%')"""


def _refuse_last_admin(c: Ctx, user_id: str) -> Plan[None]:
    """Raise LastAdmin unless another enabled admin exists. PostgreSQL serialises these
    checks with a transaction lock: the second of two concurrent demotions reads after
    the first committed (READ COMMITTED: each statement sees what committed before it)."""
    lock = c.dialect.locks.get("admins")
    if lock:
        yield one(lock)
    (exists,) = yield one(c.q(_ANOTHER_ENABLED_ADMIN), user_id)
    if not exists:
        raise LastAdmin()


_UPDATE_USER = "UPDATE users SET roles = $2, disabled = $3 WHERE id = $1"


def update_user(
    c: Ctx,
    user_id: str,
    roles: tuple[str, ...] | None,
    disabled: bool | None,
    now: int,
) -> Plan[UserUpdate | None]:
    yield BEGIN
    user = user_from((yield one(c.q(_USER_BY_ID_LOCKED), user_id)))
    if user is None:
        return None
    changed = updated(user, roles, disabled)
    if needs_another_admin(user, changed):
        yield from _refuse_last_admin(c, user_id)
    yield run(c.q(_UPDATE_USER), user_id, _roles_text(changed.roles), changed.disabled)
    reason = revoke_reason(user, changed)
    revoked = []
    if reason is not None:
        revoked = yield from revoke(c, _REVOKE_USER, (user_id,), reason, now)
    return UserUpdate(changed, revoked)


# Conditional on the verified hash. On PostgreSQL an UPDATE that waited for a
# concurrent change of the row re-checks its WHERE on the new row, so of two changes
# that verified the same hash exactly one matches.
_SWAP_PASSWORD = (
    "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2"
)


def change_password(
    c: Ctx,
    user_id: str,
    current_hash: str,
    password_hash: str,
    keep_session_id: str | None,
    now: int,
) -> Plan[list[str] | None]:
    yield BEGIN
    changed = yield run(c.q(_SWAP_PASSWORD), user_id, current_hash, password_hash)
    if not changed:
        return None
    return (
        yield from revoke_user_sessions(
            c, user_id, keep_session_id, RevokeReason.PASSWORD_CHANGE, now
        )
    )


def delete_user(c: Ctx, user_id: str, now: int) -> Plan[list[str] | None]:
    yield BEGIN
    user = user_from((yield one(c.q(_USER_BY_ID_LOCKED), user_id)))
    if user is None:
        return None
    if needs_another_admin(user, None):
        yield from _refuse_last_admin(c, user_id)
    yield run(c.q("DELETE FROM users WHERE id = $1"), user_id)
    return (
        yield from revoke(c, _REVOKE_USER, (user_id,), RevokeReason.USER_DELETED, now)
    )


# sessions and refresh tokens

_SIGNIN_STILL_VALID = """
    SELECT 1 FROM users WHERE id = $1 AND password_hash = $2 AND NOT disabled
    {for_share}"""

_INSERT_SESSION = """
    INSERT INTO sessions (id, user_id, created_at, expires_at, last_used_at,
                          user_agent, ip)
    VALUES ($1, $2, $3, $4, $3, $5, $6)"""

_INSERT_TOKEN = "INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)"


def create_session(c: Ctx, session: NewSession, password_hash: str) -> Plan[bool]:
    """The user row is read in share mode (PostgreSQL): a password change, disable or
    deletion either committed before (the row no longer matches) or waits for this
    transaction and then revokes the new session with the others."""
    yield BEGIN
    if (yield one(c.q(_SIGNIN_STILL_VALID), session.user_id, password_hash)) is None:
        return False
    escape = c.dialect.escape
    yield run(
        c.q(_INSERT_SESSION),
        session.id,
        session.user_id,
        session.created_at,
        session.expires_at,
        None if session.user_agent is None else escape(session.user_agent),
        None if session.ip is None else escape(session.ip),
    )
    yield run(c.q(_INSERT_TOKEN), session.token_hash, session.id)
    return True


_TOKEN_STATE = f"""
    SELECT t.session_id, s.expires_at, s.revoke_reason, t.retired_ms,
           n.retired_ms IS NOT NULL,
           {", ".join(f"u.{column}" for column in USER_COLUMNS.split(", "))}
    FROM refresh_tokens t
    JOIN sessions s ON s.id = t.session_id
    LEFT JOIN refresh_tokens n ON n.token_hash = t.successor_hash
    LEFT JOIN users u ON u.id = s.user_id
    WHERE t.token_hash = $1"""
_STATE_USER = 5  # where the user's columns start in a _TOKEN_STATE row

# Locks the token's session. The state is then read by a second statement: under READ
# COMMITTED a statement that waited for a row lock re-reads only the locked rows, while a
# new statement sees everything committed before it began (retired_ms, the successor).
_LOCK_SESSION = """
    SELECT s.id FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
    WHERE t.token_hash = $1 FOR UPDATE OF s"""


def _token_state(row: tuple | None) -> TokenState | None:
    if row is None:
        return None
    user = user_from(row, _STATE_USER)
    return TokenState(
        session_id=row[0],
        session_expires_at=row[1],
        revoke_reason=row[2],
        retired_ms=row[3],
        successor_presented=bool(row[4]),
        user_exists=user is not None,
        user_disabled=user is not None and user.disabled,
    )


def use_refresh_token(c: Ctx, request: RefreshRequest) -> Plan[RefreshResult]:
    """A read decides first: unknown tokens and revoked sessions are answered without a
    write lock. Anything else re-reads and re-decides inside the write transaction, whose
    lock (the session row, or SQLite's file lock) makes the decision race-free; unless
    the runner says that the first read already held that lock (SQLite, a plan run in
    a transaction another plan of its batch began), when it stands as read."""
    row = yield one(c.q(_TOKEN_STATE), request.token_hash)
    state = _token_state(row)
    outcome, action = decide(state, request)
    if action is not Action.NONE:
        if not (yield BEGIN):
            if c.dialect.row_locks:
                yield one(c.q(_LOCK_SESSION), request.token_hash)
            row = yield one(c.q(_TOKEN_STATE), request.token_hash)
            state = _token_state(row)
            outcome, action = decide(state, request)
        if state is not None:
            yield from _apply(c, action, state, request)
    if row is None:
        return RefreshResult(outcome)
    user, session_id = user_from(row, _STATE_USER), row[0]
    if not outcome.succeeded:
        return RefreshResult(outcome, user, session_id)
    expires_at = request.expires_at if action in _USES else row[1]
    return RefreshResult(outcome, user, session_id, expires_at)


_RETIRE = """UPDATE refresh_tokens SET retired_ms = $2, successor_hash = $3
    WHERE token_hash = $1"""
_EXTEND = "UPDATE sessions SET expires_at = $2, last_used_at = $3 WHERE id = $1"
# _RETIRE, _INSERT_TOKEN and _EXTEND in one statement
_ROTATE = """
    WITH retired AS (
        UPDATE refresh_tokens SET retired_ms = $2, successor_hash = $3
        WHERE token_hash = $1
    ), successor AS (
        INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($3, $4)
    )
    UPDATE sessions SET expires_at = $5, last_used_at = $6 WHERE id = $4"""
_DELETE_TOKENS_OF = "DELETE FROM refresh_tokens WHERE session_id = $1"
_DELETE_SESSION = "DELETE FROM sessions WHERE id = $1"


_USES = (Action.ROTATE, Action.TOUCH)  # a successful use extends the session


def _apply(c: Ctx, action: Action, state: TokenState, request: RefreshRequest) -> Plan:
    sid, now = state.session_id, int(request.now)
    if action is Action.ROTATE:
        retired = epoch_ms(request.now)
        if c.dialect.writable_ctes:
            yield run(
                c.q(_ROTATE),
                request.token_hash,
                retired,
                request.successor_hash,
                sid,
                request.expires_at,
                now,
            )
            return
        yield run(c.q(_RETIRE), request.token_hash, retired, request.successor_hash)
        yield run(c.q(_INSERT_TOKEN), request.successor_hash, sid)
        yield run(c.q(_EXTEND), sid, request.expires_at, now)
    elif action is Action.TOUCH:
        yield run(c.q(_EXTEND), sid, request.expires_at, now)
    elif action is Action.DELETE_SESSION:
        yield run(c.q(_DELETE_TOKENS_OF), sid)
        yield run(c.q(_DELETE_SESSION), sid)
    elif (reason := action.revoke_reason) is not None:
        yield from revoke(c, _REVOKE_SESSION, (sid,), reason, now)


_SESSION_OF_TOKEN = """
    SELECT s.id, s.user_id, s.revoked_at FROM refresh_tokens t
    JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = $1"""


def revoke_session(
    c: Ctx, token_hash: bytes, reason: RevokeReason, now: int
) -> Plan[RevokedSession | None]:
    row = yield one(c.q(_SESSION_OF_TOKEN), token_hash)
    if row is None:
        return None
    session_id, user_id, revoked_at = row
    if revoked_at is not None:
        return RevokedSession(session_id, user_id, was_live=False)
    yield BEGIN
    revoked = yield from revoke(c, _REVOKE_SESSION, (session_id,), reason, now)
    return RevokedSession(session_id, user_id, was_live=bool(revoked))


_LIST_SESSIONS = """
    SELECT id, user_id, created_at, COALESCE(last_used_at, created_at), expires_at,
           user_agent, ip
    FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
    ORDER BY created_at DESC, id DESC"""


def list_sessions(c: Ctx, user_id: str, now: int) -> Plan[list[SessionInfo]]:
    rows = yield all_rows(c.q(_LIST_SESSIONS), user_id, now)
    return [SessionInfo(*row) for row in rows]


def revoke_user_session(
    c: Ctx, user_id: str, session_id: str, reason: RevokeReason, now: int
) -> Plan[bool]:
    yield BEGIN
    revoked = yield from revoke(
        c, _REVOKE_LIVE_SESSION_OF, (session_id, user_id, now), reason, now
    )
    return bool(revoked)


def revoke_user_sessions(
    c: Ctx, user_id: str, keep_session_id: str | None, reason: RevokeReason, now: int
) -> Plan[list[str]]:
    """Revoke every unrevoked session of the user but one; inside a transaction."""
    if keep_session_id is None:
        return (yield from revoke(c, _REVOKE_USER, (user_id,), reason, now))
    args = (user_id, keep_session_id)
    return (yield from revoke(c, _REVOKE_USER_BUT, args, reason, now))


def revoke_other_sessions(
    c: Ctx, user_id: str, keep_session_id: str | None, reason: RevokeReason, now: int
) -> Plan[list[str]]:
    """The user's other devices: the live sessions, those the user can see listed."""
    yield BEGIN
    args = (user_id, keep_session_id, now)
    return (yield from revoke(c, _REVOKE_LIVE_OTHERS, args, reason, now))


# revocations


def revoke(
    c: Ctx, revoke_sql: str, args: tuple, reason: RevokeReason, now: int
) -> Plan[list[str]]:
    """Revoke sessions (a `_revoke_sql` statement and its arguments from $3) and record
    their revocations; inside a transaction. Their ids.

    The revocation log is read by sequence number (`revocations_since`), so rows must
    become visible in that order. SQLite's file lock gives that; on PostgreSQL a sequence
    value is taken at insert and becomes visible at commit, out of order: a poll could see
    seq 7 while seq 6 is still uncommitted, and skip 6 for good. So the insert and the
    commit run under one transaction lock ("revocations"): the next revoking transaction
    takes its sequence numbers only after this one is visible, and every snapshot sees a
    prefix of the log. The NOTIFY then tells the other instances to read it now."""
    rows = yield all_rows(c.q(revoke_sql), now, str(reason), *args)
    ids = [row[0] for row in rows]
    if ids:
        lock = c.dialect.locks.get("revocations")
        if lock:
            yield one(lock)
        keep_until = now + c.revocation_ttl
        yield many(c.q(_RECORD_REVOCATION), [(sid, keep_until) for sid in ids])
        if c.dialect.notify:
            yield one(c.dialect.notify, c.channel)
    return ids


_REVOCATIONS_AFTER = """
    SELECT seq, session_id, keep_until FROM revocations WHERE seq > $1 ORDER BY seq"""


def revocations_since(
    c: Ctx, cursor: int | None, now: int
) -> Plan[tuple[list[Revocation], int]]:
    """One statement, so the rows and the new cursor come from one snapshot; ended rows
    move the cursor but are not returned."""
    rows = yield all_rows(c.q(_REVOCATIONS_AFTER), cursor or 0)
    live = [Revocation(sid, until) for _, sid, until in rows if until > now]
    return live, rows[-1][0] if rows else cursor or 0


# counters

_HIT_COUNTER = """
    INSERT INTO counters (key, count, reset_at) VALUES ($1, 1, $2)
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN counters.reset_at <= $3 THEN 1 ELSE counters.count + 1 END,
        reset_at = CASE WHEN counters.reset_at <= $3 THEN excluded.reset_at
                   ELSE counters.reset_at END
    RETURNING count, reset_at"""


def hit_counter(c: Ctx, key: str, window: int, now: int) -> Plan[Counter]:
    yield WRITE
    count, reset_at = yield one(
        c.q(_HIT_COUNTER), c.dialect.escape(key), now + window, now
    )
    return Counter(count, reset_at)


def refund_counter(c: Ctx, key: str, now: int) -> Plan[None]:
    yield WRITE
    yield run(
        c.q(
            "UPDATE counters SET count = count - 1 "
            "WHERE key = $1 AND reset_at > $2 AND count > 0"
        ),
        c.dialect.escape(key),
        now,
    )


def read_counter(c: Ctx, key: str, now: int) -> Plan[Counter]:
    row = yield one(
        c.q("SELECT count, reset_at FROM counters WHERE key = $1 AND reset_at > $2"),
        c.dialect.escape(key),
        now,
    )
    return Counter(row[0], row[1]) if row else Counter(0, now)


def delete_counter(c: Ctx, key: str) -> Plan[None]:
    yield WRITE
    yield run(c.q("DELETE FROM counters WHERE key = $1"), c.dialect.escape(key))


# maintenance


def purge_sessions(c: Ctx, now: int, batch_size: int) -> Plan[tuple[int, int]]:
    """One batch of expired sessions with their tokens: (sessions, tokens). SKIP LOCKED:
    sessions being refreshed, and batches taken by another purging process, are left
    for the next pass instead of waited for."""
    yield BEGIN
    rows = yield all_rows(
        c.q("SELECT id FROM sessions WHERE expires_at <= $1 LIMIT $2{skip_locked}"),
        now,
        batch_size,
    )
    if not rows:
        return 0, 0
    ids = c.dialect.list_param([row[0] for row in rows])
    tokens = yield run(
        c.q("DELETE FROM refresh_tokens WHERE session_id {in_list_1}"), ids
    )
    yield run(c.q("DELETE FROM sessions WHERE id {in_list_1}"), ids)
    return len(rows), tokens


_PURGE_RETIRED = """
    DELETE FROM refresh_tokens WHERE token_hash IN (
        SELECT token_hash FROM refresh_tokens WHERE retired_ms < $1
        LIMIT $2{skip_locked})"""


def purge_retired(c: Ctx, now: int, batch_size: int) -> Plan[int]:
    """One batch of refresh tokens retired more than `reuse_window` seconds ago: reuse
    detection keeps a bounded window, and a long-lived session a bounded chain."""
    yield WRITE
    cutoff = (now - c.reuse_window) * 1000
    return (yield run(c.q(_PURGE_RETIRED), cutoff, batch_size))


_PURGE_ENDED = {
    table: f"""DELETE FROM {table} WHERE {key} IN (
        SELECT {key} FROM {table} WHERE {column} <= $1 LIMIT $2{{skip_locked}})"""
    for table, key, column in (
        ("revocations", "seq", "keep_until"),
        ("counters", "key", "reset_at"),
    )
}


def purge_ended(c: Ctx, table: str, now: int, batch_size: int) -> Plan[int]:
    """One batch of ended revocations or counters."""
    yield WRITE
    return (yield run(c.q(_PURGE_ENDED[table]), now, batch_size))


def get_or_create_secret(c: Ctx, name: str, candidate: bytes) -> Plan[bytes]:
    """Two statements: on PostgreSQL the SELECT's fresh snapshot sees a row that a
    concurrent process committed while our INSERT waited on it."""
    yield BEGIN
    yield run(
        c.q(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) "
            "ON CONFLICT (name) DO NOTHING"
        ),
        name,
        candidate,
    )
    (value,) = yield one(c.q("SELECT value FROM secrets WHERE name = $1"), name)
    return bytes(value)
