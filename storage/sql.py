"""The storage interface on a SQL database: every method is a plan (plans.py) handed to
the backend's runner. A SQL backend is then a dialect, a runner and open/close."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from . import plans
from .base import DEFAULT_REUSE_WINDOW, Storage
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
from .sqlkit import Ctx, Dialect, Plan

T = TypeVar("T")


class SQLStorage(Storage):
    dialect: ClassVar[Dialect]

    def __init__(
        self, revocation_ttl: int, *, reuse_window: int = DEFAULT_REUSE_WINDOW
    ) -> None:
        super().__init__(revocation_ttl, reuse_window=reuse_window)
        self.ctx = Ctx(self.dialect, revocation_ttl, reuse_window)

    @abstractmethod
    async def _run(self, plan: Callable[..., Plan[T]], *args: Any) -> T:
        """Drive `plan(self.ctx, *args)` to its answer: commit the transaction it began
        when it returns, roll it back when it raises, add one to `write_transactions`
        for each BEGIN or WRITE, and raise StorageUnavailable when the database cannot
        be reached."""

    def _storable(self, *texts: str | None) -> bool:
        return all(t is None or self.dialect.storable(t) for t in texts)

    async def ping(self) -> None:
        await self._run(plans.ping)

    # users

    async def create_user(self, user: User) -> None:
        await self._run(plans.create_user, user)

    async def get_user(self, user_id: str) -> User | None:
        if not self._storable(user_id):
            return None
        return await self._run(plans.get_user, user_id)

    async def find_user(
        self, *, username: str | None = None, email: str | None = None
    ) -> User | None:
        if username is not None:
            column, text, key = "username_key", username, username_key(username)
        else:
            text = email or ""
            column, key = "email_key", email_key(text)
        if not self._storable(text):
            return None
        return await self._run(plans.find_user, column, lookup_keys(key, text))

    async def list_users(
        self, limit: int, after: tuple[int, str] | None, query: str | None
    ) -> list[User]:
        if not self._storable(query, after[1] if after else None):
            return []
        if limit <= 0 or (query and "\x00" in query):  # no username or email has NUL
            return []
        return await self._run(plans.list_users, limit, after, query)

    async def update_user(
        self,
        user_id: str,
        *,
        roles: tuple[str, ...] | None = None,
        disabled: bool | None = None,
        now: int,
    ) -> UserUpdate | None:
        if not self._storable(user_id):
            return None
        return await self._run(plans.update_user, user_id, roles, disabled, now)

    async def change_password(
        self,
        user_id: str,
        current_hash: str,
        password_hash: str,
        keep_session_id: str | None,
        now: int,
    ) -> list[str] | None:
        if not self._storable(user_id, current_hash, keep_session_id):
            return None
        return await self._run(
            plans.change_password,
            user_id,
            current_hash,
            password_hash,
            keep_session_id,
            now,
        )

    async def delete_user(self, user_id: str, now: int) -> list[str] | None:
        if not self._storable(user_id):
            return None
        return await self._run(plans.delete_user, user_id, now)

    # sessions and refresh tokens

    async def create_session(self, session: NewSession, password_hash: str) -> bool:
        if not self._storable(session.user_id, password_hash):
            return False
        return await self._run(plans.create_session, session, password_hash)

    async def use_refresh_token(self, request: RefreshRequest) -> RefreshResult:
        return await self._run(plans.use_refresh_token, request)

    async def revoke_session(
        self, token_hash: bytes, reason: RevokeReason, now: int
    ) -> RevokedSession | None:
        return await self._run(plans.revoke_session, token_hash, reason, now)

    async def list_sessions(self, user_id: str, now: int) -> list[SessionInfo]:
        if not self._storable(user_id):
            return []
        return await self._run(plans.list_sessions, user_id, now)

    async def revoke_user_session(
        self, user_id: str, session_id: str, reason: RevokeReason, now: int
    ) -> bool:
        if not self._storable(user_id, session_id):
            return False
        return await self._run(
            plans.revoke_user_session, user_id, session_id, reason, now
        )

    async def revoke_other_sessions(
        self, user_id: str, keep_session_id: str | None, reason: RevokeReason, now: int
    ) -> list[str]:
        if not self._storable(user_id, keep_session_id):
            return []
        return await self._run(
            plans.revoke_other_sessions, user_id, keep_session_id, reason, now
        )

    # revocations

    async def revocations_since(
        self, cursor: int | None, now: int
    ) -> tuple[list[Revocation], int]:
        return await self._run(plans.revocations_since, cursor, now)

    # counters

    async def hit_counter(self, key: str, window: int, now: int) -> Counter:
        return await self._run(plans.hit_counter, key, window, now)

    async def refund_counter(self, key: str, now: int) -> None:
        await self._run(plans.refund_counter, key, now)

    async def read_counter(self, key: str, now: int) -> Counter:
        return await self._run(plans.read_counter, key, now)

    async def delete_counter(self, key: str) -> None:
        await self._run(plans.delete_counter, key)

    # maintenance

    async def purge_expired(self, now: int, batch_size: int) -> PurgeResult:
        """Each part is its own short transaction."""
        sessions, tokens = await self._run(plans.purge_sessions, now, batch_size)
        tokens += await self._run(plans.purge_retired, now, batch_size)
        other = 0
        for table in ("revocations", "counters"):
            other += await self._run(plans.purge_ended, table, now, batch_size)
        return PurgeResult(sessions, tokens, other)

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        return await self._run(plans.get_or_create_secret, name, candidate)
