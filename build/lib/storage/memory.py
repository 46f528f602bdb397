"""In-memory backend for tests and demos. Each method runs without awaiting, so every
operation is atomic on the event loop. Nothing survives the process."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .base import Storage
from .errors import EmailTaken, UsernameTaken
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


@dataclass
class _Session:
    id: str
    user_id: str
    expires_at: int
    revoked_at: int | None = None
    reason: RevokeReason | None = None


@dataclass
class _Token:
    session_id: str
    retired_at: int | None = None
    successor_hash: bytes | None = None


class MemoryStorage(Storage):
    def __init__(self, revocation_ttl: int) -> None:
        super().__init__(revocation_ttl)
        self._users: dict[str, User] = {}
        self._usernames: dict[str, str] = {}
        self._emails: dict[str, str] = {}
        self._sessions: dict[str, _Session] = {}
        self._tokens: dict[bytes, _Token] = {}
        self._session_tokens: dict[str, list[bytes]] = {}
        self._revocations: dict[str, int] = {}
        self._counters: dict[str, Counter] = {}
        self._secrets: dict[str, bytes] = {}

    async def create_user(self, user: User) -> None:
        if user.username.casefold() in self._usernames:
            raise UsernameTaken(user.username)
        if user.email.casefold() in self._emails:
            raise EmailTaken(user.email)
        self._users[user.id] = user
        self._usernames[user.username.casefold()] = user.id
        self._emails[user.email.casefold()] = user.id

    async def get_user(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    async def find_user(
        self, *, username: str | None = None, email: str | None = None
    ) -> User | None:
        index, key = (
            (self._usernames, username)
            if username is not None
            else (self._emails, email)
        )
        user_id = index.get((key or "").casefold())
        return self._users.get(user_id) if user_id else None

    async def change_password(
        self, user_id: str, password_hash: str, keep_session_id: str | None, now: int
    ) -> list[str]:
        user = self._users.get(user_id)
        if user is None:
            return []
        self._users[user_id] = replace(user, password_hash=password_hash)
        others = [s for s in self._live_sessions(user_id) if s.id != keep_session_id]
        return [self._revoke(s, RevokeReason.PASSWORD_CHANGE, now) for s in others]

    async def delete_user(self, user_id: str, now: int) -> list[str] | None:
        user = self._users.pop(user_id, None)
        if user is None:
            return None
        del self._usernames[user.username.casefold()]
        del self._emails[user.email.casefold()]
        sessions = self._live_sessions(user_id)
        return [self._revoke(s, RevokeReason.USER_DELETED, now) for s in sessions]

    async def create_session(self, session: NewSession) -> None:
        self._sessions[session.id] = _Session(
            session.id, session.user_id, session.expires_at
        )
        self._tokens[session.token_hash] = _Token(session.id)
        self._session_tokens[session.id] = [session.token_hash]

    async def use_refresh_token(self, request: RefreshRequest) -> RefreshResult:
        token = self._tokens.get(request.token_hash)
        outcome, action = decide(self._token_state(token), request)
        if token is None:
            return RefreshResult(outcome)
        session = self._sessions[token.session_id]
        if action is Action.ROTATE:
            self._rotate(token, session, request)
        elif action is Action.DELETE_SESSION:
            self._delete_session(session.id)
        elif action is Action.REVOKE_FOR_REUSE:
            self._revoke(session, RevokeReason.REUSE, request.now)
        elif action is Action.REVOKE_USER_GONE:
            self._revoke(session, RevokeReason.USER_DELETED, request.now)
        if not outcome.succeeded:
            return RefreshResult(outcome, session_id=session.id)
        user = self._users[session.user_id]
        return RefreshResult(outcome, user, session.id, session.expires_at)

    def _token_state(self, token: _Token | None) -> TokenState | None:
        if token is None:
            return None
        session = self._sessions[token.session_id]
        successor = self._tokens.get(token.successor_hash or b"")
        return TokenState(
            session_id=session.id,
            session_expires_at=session.expires_at,
            revoke_reason=session.reason,
            retired_at=token.retired_at,
            successor_presented=successor is not None
            and successor.retired_at is not None,
            user_exists=session.user_id in self._users,
        )

    def _rotate(
        self, token: _Token, session: _Session, request: RefreshRequest
    ) -> None:
        assert request.successor_hash is not None
        token.retired_at = request.now
        token.successor_hash = request.successor_hash
        self._tokens[request.successor_hash] = _Token(session.id)
        self._session_tokens[session.id].append(request.successor_hash)
        session.expires_at = request.expires_at

    async def revoke_session(
        self, token_hash: bytes, reason: RevokeReason, now: int
    ) -> str | None:
        token = self._tokens.get(token_hash)
        if token is None:
            return None
        session = self._sessions[token.session_id]
        if session.revoked_at is None:
            self._revoke(session, reason, now)
        return session.id

    async def live_revocations(self, now: int) -> list[Revocation]:
        return [
            Revocation(sid, until)
            for sid, until in self._revocations.items()
            if until > now
        ]

    async def hit_counter(self, key: str, window: int, now: int) -> Counter:
        current = self._counters.get(key)
        if current is None or current.reset_at <= now:
            current = Counter(0, now + window)
        self._counters[key] = counter = Counter(current.count + 1, current.reset_at)
        return counter

    async def read_counter(self, key: str, now: int) -> Counter:
        current = self._counters.get(key)
        if current is None or current.reset_at <= now:
            return Counter(0, now)
        return current

    async def delete_counter(self, key: str) -> None:
        self._counters.pop(key, None)

    async def purge_expired(self, now: int, batch_size: int) -> PurgeResult:
        expired = [s.id for s in self._sessions.values() if s.expires_at <= now][
            :batch_size
        ]
        tokens = sum(self._delete_session(sid) for sid in expired)
        ended = [k for k, until in self._revocations.items() if until <= now][
            :batch_size
        ]
        for sid in ended:
            del self._revocations[sid]
        counters = [k for k, c in self._counters.items() if c.reset_at <= now][
            :batch_size
        ]
        for key in counters:
            del self._counters[key]
        return PurgeResult(len(expired), tokens, len(ended) + len(counters))

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        return self._secrets.setdefault(name, candidate)

    def _live_sessions(self, user_id: str) -> list[_Session]:
        return [
            s
            for s in self._sessions.values()
            if s.user_id == user_id and s.revoked_at is None
        ]

    def _revoke(self, session: _Session, reason: RevokeReason, now: int) -> str:
        session.revoked_at, session.reason = now, reason
        self._revocations[session.id] = now + self.revocation_ttl
        return session.id

    def _delete_session(self, session_id: str) -> int:
        del self._sessions[session_id]
        hashes = self._session_tokens.pop(session_id)
        for token_hash in hashes:
            del self._tokens[token_hash]
        return len(hashes)
