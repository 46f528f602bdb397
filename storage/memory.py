"""In-memory backend for tests and demos. Each method runs without awaiting, so every
operation is atomic on the event loop. Nothing survives the process."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from .accounts import is_enabled_admin, needs_another_admin, revoke_reason, updated
from .base import DEFAULT_REUSE_WINDOW, Storage
from .errors import EmailTaken, LastAdmin, StorageError, UsernameTaken
from .identity import email_key, lookup_keys, username_key
from .models import (
    Counter,
    NewSession,
    PurgeResult,
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


@dataclass
class _Session:
    id: str
    user_id: str
    created_at: int
    expires_at: int
    last_used_at: int
    user_agent: str | None
    ip: str | None
    revoked_at: int | None = None
    reason: RevokeReason | None = None

    def live(self, now: int) -> bool:
        return self.revoked_at is None and self.expires_at > now


@dataclass
class _Token:
    session_id: str
    retired_ms: int | None = None
    successor_hash: bytes | None = None


class MemoryStorage(Storage):
    def __init__(
        self, revocation_ttl: int, *, reuse_window: int = DEFAULT_REUSE_WINDOW
    ) -> None:
        super().__init__(revocation_ttl, reuse_window=reuse_window)
        self._users: dict[str, User] = {}
        self._usernames: dict[str, str] = {}
        self._emails: dict[str, str] = {}
        self._sessions: dict[str, _Session] = {}
        self._tokens: dict[bytes, _Token] = {}
        self._session_tokens: dict[str, list[bytes]] = {}
        self._revocations: list[tuple[int, str, int]] = []  # (seq, session, until)
        self._revocation_seq = 0
        self._counters: dict[str, Counter] = {}
        self._secrets: dict[str, bytes] = {}

    def _wrote(self) -> None:
        self.write_transactions += 1

    async def ping(self) -> None:
        return None

    # users

    async def create_user(self, user: User) -> None:
        self._wrote()
        ukey, ekey = username_key(user.username), email_key(user.email)
        if ukey in self._usernames:
            raise UsernameTaken(user.username)
        if ekey in self._emails:
            raise EmailTaken(user.email)
        if user.id in self._users:
            raise StorageError(f"user {user.id} was not inserted: its id is taken")
        self._users[user.id] = user
        self._usernames[ukey] = user.id
        self._emails[ekey] = user.id

    async def get_user(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    async def find_user(
        self, *, username: str | None = None, email: str | None = None
    ) -> User | None:
        if username is not None:
            index, text, key = self._usernames, username, username_key(username)
        else:
            text = email or ""
            index, key = self._emails, email_key(text)
        for candidate in lookup_keys(key, text):
            if candidate in index:
                return self._users[index[candidate]]
        return None

    async def list_users(
        self, limit: int, after: tuple[int, str] | None, query: str | None
    ) -> list[User]:
        text = username_key(query) if query else None
        found: list[User] = []
        if limit <= 0:
            return found
        for user in sorted(self._users.values(), key=_order):
            if after is not None and _order(user) <= after:
                continue
            if text is not None and not self._matches(user, text):
                continue
            found.append(user)
            if len(found) == limit:
                break
        return found

    def _matches(self, user: User, text: str) -> bool:
        keys = (username_key(user.username), email_key(user.email))
        return any(text in key for key in keys)

    async def update_user(
        self,
        user_id: str,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        now: int,
    ) -> UserUpdate | None:
        self._wrote()
        user = self._users.get(user_id)
        if user is None:
            return None
        changed = updated(user, roles, disabled)
        if needs_another_admin(user, changed):
            self._refuse_last_admin(user_id)
        self._users[user_id] = changed
        reason = revoke_reason(user, changed)
        revoked = self._revoke_user(user_id, None, reason, now) if reason else []
        return UserUpdate(changed, revoked)

    def _refuse_last_admin(self, user_id: str) -> None:
        others = (u for u in self._users.values() if u.id != user_id)
        if not any(is_enabled_admin(u) for u in others):
            raise LastAdmin()

    async def change_password(
        self,
        user_id: str,
        current_hash: str,
        password_hash: str,
        keep_session_id: str | None,
        now: int,
    ) -> list[str] | None:
        self._wrote()
        user = self._users.get(user_id)
        if user is None or user.password_hash != current_hash:
            return None
        self._users[user_id] = replace(user, password_hash=password_hash)
        return self._revoke_user(
            user_id, keep_session_id, RevokeReason.PASSWORD_CHANGE, now
        )

    async def delete_user(self, user_id: str, now: int) -> list[str] | None:
        self._wrote()
        user = self._users.get(user_id)
        if user is None:
            return None
        if needs_another_admin(user, None):
            self._refuse_last_admin(user_id)
        del self._users[user_id]
        del self._usernames[username_key(user.username)]
        del self._emails[email_key(user.email)]
        return self._revoke_user(user_id, None, RevokeReason.USER_DELETED, now)

    # sessions and refresh tokens

    async def create_session(self, session: NewSession, password_hash: str) -> bool:
        self._wrote()
        user = self._users.get(session.user_id)
        if user is None or user.disabled or user.password_hash != password_hash:
            return False
        self._sessions[session.id] = _Session(
            session.id,
            session.user_id,
            session.created_at,
            session.expires_at,
            session.created_at,
            session.user_agent,
            session.ip,
        )
        self._tokens[session.token_hash] = _Token(session.id)
        self._session_tokens[session.id] = [session.token_hash]
        return True

    async def use_refresh_token(self, request: RefreshRequest) -> RefreshResult:
        token = self._tokens.get(request.token_hash)
        outcome, action = decide(self._token_state(token), request)
        if token is None:
            return RefreshResult(outcome)
        session = self._sessions[token.session_id]
        user = self._users.get(session.user_id)
        if action is not Action.NONE:
            self._wrote()
            self._apply(action, token, session, request)
        if not outcome.succeeded:
            return RefreshResult(outcome, user, session.id)
        return RefreshResult(outcome, user, session.id, session.expires_at)

    def _apply(
        self, action: Action, token: _Token, session: _Session, request: RefreshRequest
    ) -> None:
        now = int(request.now)
        if action is Action.ROTATE:
            assert request.successor_hash is not None
            token.retired_ms = epoch_ms(request.now)
            token.successor_hash = request.successor_hash
            self._tokens[request.successor_hash] = _Token(session.id)
            self._session_tokens[session.id].append(request.successor_hash)
            session.expires_at = request.expires_at
            session.last_used_at = now
        elif action is Action.TOUCH:
            session.expires_at = request.expires_at
            session.last_used_at = now
        elif action is Action.DELETE_SESSION:
            self._delete_session(session.id)
        elif (reason := action.revoke_reason) is not None:
            self._revoke([session], reason, now)

    def _token_state(self, token: _Token | None) -> TokenState | None:
        if token is None:
            return None
        session = self._sessions[token.session_id]
        successor = self._tokens.get(token.successor_hash or b"")
        user = self._users.get(session.user_id)
        return TokenState(
            session_id=session.id,
            session_expires_at=session.expires_at,
            revoke_reason=session.reason,
            retired_ms=token.retired_ms,
            successor_presented=successor is not None
            and successor.retired_ms is not None,
            user_exists=user is not None,
            user_disabled=user is not None and user.disabled,
        )

    async def revoke_session(
        self, token_hash: bytes, reason: RevokeReason, now: int
    ) -> RevokedSession | None:
        token = self._tokens.get(token_hash)
        if token is None:
            return None
        session = self._sessions[token.session_id]
        was_live = session.revoked_at is None
        if was_live:
            self._wrote()
            self._revoke([session], reason, now)
        return RevokedSession(session.id, session.user_id, was_live)

    async def list_sessions(self, user_id: str, now: int) -> list[SessionInfo]:
        live = [
            s for s in self._sessions.values() if s.user_id == user_id and s.live(now)
        ]
        live.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        return [
            SessionInfo(
                s.id,
                s.user_id,
                s.created_at,
                s.last_used_at,
                s.expires_at,
                s.user_agent,
                s.ip,
            )
            for s in live
        ]

    async def revoke_user_session(
        self, user_id: str, session_id: str, reason: RevokeReason, now: int
    ) -> bool:
        self._wrote()
        session = self._sessions.get(session_id)
        if session is None or session.user_id != user_id or not session.live(now):
            return False
        self._revoke([session], reason, now)
        return True

    async def revoke_other_sessions(
        self, user_id: str, keep_session_id: str | None, reason: RevokeReason, now: int
    ) -> list[str]:
        self._wrote()
        others = [
            s
            for s in self._sessions.values()
            if s.user_id == user_id and s.id != keep_session_id and s.live(now)
        ]
        return self._revoke(others, reason, now)

    # revocations

    async def revocations_since(
        self, cursor: int | None, now: int
    ) -> tuple[list[Revocation], int]:
        start = bisect.bisect_right(self._revocations, (cursor or 0, "\U0010ffff"))
        new = self._revocations[start:]
        live = [Revocation(sid, until) for _, sid, until in new if until > now]
        return live, new[-1][0] if new else cursor or 0

    # counters

    async def hit_counter(self, key: str, window: int, now: int) -> Counter:
        self._wrote()
        current = self._counters.get(key)
        if current is None or current.reset_at <= now:
            current = Counter(0, now + window)
        self._counters[key] = counter = Counter(current.count + 1, current.reset_at)
        return counter

    async def refund_counter(self, key: str, now: int) -> None:
        self._wrote()
        current = self._counters.get(key)
        if current is not None and current.reset_at > now and current.count > 0:
            self._counters[key] = Counter(current.count - 1, current.reset_at)

    async def read_counter(self, key: str, now: int) -> Counter:
        current = self._counters.get(key)
        if current is None or current.reset_at <= now:
            return Counter(0, now)
        return current

    async def delete_counter(self, key: str) -> None:
        self._wrote()
        self._counters.pop(key, None)

    # maintenance

    async def purge_expired(self, now: int, batch_size: int) -> PurgeResult:
        self.write_transactions += 4  # as many as the SQL backends' short transactions
        expired = [s.id for s in self._sessions.values() if s.expires_at <= now]
        expired = expired[:batch_size]
        tokens = sum(self._delete_session(sid) for sid in expired)
        tokens += self._purge_retired(now, batch_size)
        ended = [r for r in self._revocations if r[2] <= now][:batch_size]
        if ended:
            gone = set(ended)
            self._revocations = [r for r in self._revocations if r not in gone]
        counters = [k for k, c in self._counters.items() if c.reset_at <= now]
        for key in counters[:batch_size]:
            del self._counters[key]
        return PurgeResult(
            len(expired), tokens, len(ended) + len(counters[:batch_size])
        )

    def _purge_retired(self, now: int, batch_size: int) -> int:
        cutoff = (now - self.reuse_window) * 1000
        doomed = [
            (h, t)
            for h, t in self._tokens.items()
            if t.retired_ms is not None and t.retired_ms < cutoff
        ][:batch_size]
        for token_hash, token in doomed:
            del self._tokens[token_hash]
            self._session_tokens[token.session_id].remove(token_hash)
        return len(doomed)

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        self._wrote()
        return self._secrets.setdefault(name, candidate)

    # helpers

    def _revoke_user(
        self,
        user_id: str,
        keep_session_id: str | None,
        reason: RevokeReason,
        now: int,
    ) -> list[str]:
        doomed = [
            s
            for s in self._sessions.values()
            if s.user_id == user_id and s.revoked_at is None and s.id != keep_session_id
        ]
        return self._revoke(doomed, reason, now)

    def _revoke(
        self, sessions: list[_Session], reason: RevokeReason, now: int
    ) -> list[str]:
        for session in sessions:
            session.revoked_at, session.reason = now, reason
            self._revocation_seq += 1
            self._revocations.append(
                (self._revocation_seq, session.id, now + self.revocation_ttl)
            )
        return [s.id for s in sessions]

    def _delete_session(self, session_id: str) -> int:
        del self._sessions[session_id]
        hashes = self._session_tokens.pop(session_id)
        for token_hash in hashes:
            del self._tokens[token_hash]
        return len(hashes)


def _order(user: User) -> tuple[int, str]:
    return user.created_at, user.id
