"""The auth service: sign-up, sign-in, refresh, sign-out, password change and the access
check, with no HTTP in it.

Every route set is a thin view over these methods: the core contract, the seed dialects,
cookie mode and a host app's own guarded routes. So rate limits, revocation, rotation and
security events happen in exactly one place. Failures raise `ApiError` carrying the core
contract's status, message and code; a view may render them in its own shape.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from storage import (
    EmailTaken,
    LastAdmin,
    NewSession,
    RefreshOutcome,
    RefreshRequest,
    RefreshResult,
    RevokeReason,
    SessionInfo,
    Storage,
    User,
    UsernameTaken,
    canonical_email,
)

from . import clock, errors, paging
from .caller import Caller
from .events import log_event
from .guards import Role
from .metrics import MISSING, NO_METRICS, Metrics, SigninResult
from .passwords import (
    Admission,
    HashingBusy,
    PasswordHasher,
    WeakPassword,
    check_length,
)
from .ratelimit import EMAIL, USERNAME, RateLimiter, login_key
from .revocation import RevocationSet
from .schemas import USERNAME_PATTERN
from .settings import Settings
from .tokens import (
    AccessClaims,
    AccessTokens,
    RefreshTokens,
    TokenExpired,
    TokenInvalid,
    UnknownKeyId,
)

BUSY_RETRY_SECONDS = 1
USERNAME_MAX = 32
DERIVED_USERNAME_ATTEMPTS = 50
USERS_PAGE = 500
_NOT_USERNAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
USERNAME_RULE = re.compile(USERNAME_PATTERN)
P = ParamSpec("P")
T = TypeVar("T")


def _counting_rate_limited_signins(
    signin: Callable[Concatenate[AuthService, P], Awaitable[T]],
) -> Callable[Concatenate[AuthService, P], Awaitable[T]]:
    """Count the sign-ins refused with 429: the limits and the hashing queue refuse
    them from several places, and every refusal ends here."""

    @functools.wraps(signin)
    async def counted(service: AuthService, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await signin(service, *args, **kwargs)
        except errors.ApiError as error:
            if error.code is errors.ErrorCode.RATE_LIMITED:
                service.metrics.signin(SigninResult.RATE_LIMITED)
            raise

    return counted


class KeyReloadNeeded(errors.ApiError):
    """An access token signed by a key this process has not loaded yet. It is a
    `token_invalid` unless the caller awaits `AuthService.authenticate_reloaded`."""

    def __init__(self, token: str) -> None:
        error = errors.token_invalid()
        super().__init__(error.status, error.message, error.code, error.headers)
        self.token = token


@dataclass(frozen=True)
class SignedIn:
    """A new session and its first tokens."""

    user: User
    session_id: str
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class Refreshed:
    """A new access token; `refresh_token` is the successor when `rotated`, else the
    token that was presented."""

    user: User
    session_id: str
    access_token: str
    refresh_token: str
    rotated: bool
    expires_in: int


class AuthService:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        access_tokens: AccessTokens,
        refresh_tokens: RefreshTokens,
        passwords: PasswordHasher,
        limiter: RateLimiter,
        revocations: RevocationSet,
        *,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.access_tokens = access_tokens
        self.refresh_tokens = refresh_tokens
        self.passwords = passwords
        self.limiter = limiter
        self.revocations = revocations
        self.metrics = metrics

    # access tokens

    def authenticate(self, token: str | None) -> AccessClaims:
        """The claims of a live access token, or the contract's middleware error. No I/O:
        verified tokens are cached and revocations are held in memory. A token of a key
        this process has not loaded yet raises `KeyReloadNeeded` (a `token_invalid` to
        callers that do not wait for `authenticate_reloaded`)."""
        if not token:
            raise errors.token_missing()
        try:
            claims = self.access_tokens.verify(token)
        except TokenExpired:
            raise errors.token_expired() from None
        except UnknownKeyId:
            raise KeyReloadNeeded(token) from None
        except TokenInvalid:
            raise errors.token_invalid() from None
        return self._live(claims)

    async def authenticate_reloaded(self, token: str) -> AccessClaims:
        """`authenticate` after one (throttled, shared) reread of the key file: for a
        key published by another instance since this one's last reload."""
        try:
            claims = await self.access_tokens.verify_reloaded(token)
        except TokenExpired:
            raise errors.token_expired() from None
        except TokenInvalid:
            raise errors.token_invalid() from None
        return self._live(claims)

    async def authenticate_async(self, token: str | None) -> AccessClaims:
        """`authenticate`, rereading the key file for an unknown key if need be."""
        try:
            return self.authenticate(token)
        except KeyReloadNeeded as reload:
            return await self.authenticate_reloaded(reload.token)

    def _live(self, claims: AccessClaims) -> AccessClaims:
        if claims.session_id in self.revocations:
            raise errors.token_revoked()
        return claims

    def claims_or_none(self, token: str | None) -> AccessClaims | None:
        """For routes where a token is optional: a bad one only means "nobody"."""
        if not token:
            return None
        try:
            return self.authenticate(token)
        except errors.ApiError:
            return None

    async def claims_or_none_async(self, token: str | None) -> AccessClaims | None:
        """`claims_or_none`, rereading the key file for a key published since the last
        reload (an admin's fresh token must not count as nobody's)."""
        if not token:
            return None
        try:
            return await self.authenticate_async(token)
        except errors.ApiError:
            return None

    # users

    async def signup(
        self,
        caller: Caller,
        *,
        username: str,
        email: str,
        password: str,
        roles: list[str] | None = None,
        granted_by: AccessClaims | None = None,
    ) -> User:
        """Register a user. Roles beyond `user` need an admin's claims in `granted_by`."""
        self._check_new_password(password, "password")
        wanted = requested_roles(roles)
        if wanted != (Role.USER.value,) and not _is_admin(granted_by):
            raise errors.forbidden(Role.ADMIN.denied_message)
        await self.limiter.hit_signup(caller.limit_key)
        if await self.storage.find_user(username=username):
            raise errors.username_taken()  # before spending bcrypt; re-checked on insert
        if await self.storage.find_user(email=email):
            raise errors.email_taken()
        password_hash = await self._hash_new_password(
            caller, password, [username, email]
        )
        user = User(
            uuid.uuid4().hex,
            username,
            canonical_email(email),
            password_hash,
            wanted,
            _now(),
        )
        try:
            await self.storage.create_user(user)
        except UsernameTaken:
            raise errors.username_taken() from None
        except EmailTaken:
            raise errors.email_taken() from None
        self._event("signup", caller, user_id=user.id, roles=list(wanted))
        return user

    async def register(
        self,
        caller: Caller,
        *,
        display_name: str,
        email: str,
        password: str,
        password_field: str = "password",  # noqa: S107 (a field name, not a secret)
    ) -> User:
        """Register a user the seed dialects' way: a free-text display name and an email;
        the username is derived from the email (clients must not rely on it).
        `password_field` is how a password error names the field."""
        self._check_new_password(password, password_field)
        await self.limiter.hit_signup(caller.limit_key)
        if await self.storage.find_user(email=email):
            raise errors.email_taken()
        password_hash = await self._hash_new_password(
            caller, password, [display_name, email], password_field
        )
        for username in await self._free_usernames(email):
            user = User(
                uuid.uuid4().hex,
                username,
                canonical_email(email),
                password_hash,
                (Role.USER.value,),
                _now(),
                display_name=display_name,
            )
            try:
                await self.storage.create_user(user)
            except UsernameTaken:
                continue  # taken since we looked: try the next candidate
            except EmailTaken:
                raise errors.email_taken() from None
            self._event("signup", caller, user_id=user.id, roles=[Role.USER.value])
            return user
        raise errors.username_taken()

    async def _free_usernames(self, email: str) -> list[str]:
        """Candidates not taken when we looked: the email's local part, cleaned and
        padded to 3 characters, then with 2, 3, ... appended; then, so that the list
        is never empty even when all of those are taken (a common local part, or names
        registered to block it), two with a random suffix (`_` and 8 hex digits)."""
        base = _NOT_USERNAME_CHARS.sub("", email.rpartition("@")[0])[:USERNAME_MAX]
        base = base.ljust(3, "_")
        candidates = []
        for attempt in range(1, DERIVED_USERNAME_ATTEMPTS + 1):
            suffix = "" if attempt == 1 else str(attempt)
            name = base[: USERNAME_MAX - len(suffix)] + suffix
            if await self.storage.find_user(username=name) is None:
                candidates.append(name)
                if len(candidates) == 3:
                    break
        for _ in range(2):
            suffix = "_" + secrets.token_hex(4)
            candidates.append(base[: USERNAME_MAX - len(suffix)] + suffix)
        return candidates

    async def every_user(self) -> list[User]:
        """Every user, oldest first, read a page at a time."""
        users: list[User] = []
        after: tuple[int, str] | None = None
        while True:
            page = await self.storage.list_users(USERS_PAGE, after, None)
            users.extend(page)
            if len(page) < USERS_PAGE:
                return users
            after = (page[-1].created_at, page[-1].id)

    async def current_user(self, claims: AccessClaims) -> User:
        """The signed-in user's record; a user deleted since the token was issued is
        `token_revoked`."""
        user = await self.storage.get_user(claims.user_id)
        if user is None:
            raise errors.token_revoked()
        return user

    async def delete_user(
        self, caller: Caller, actor: AccessClaims, user_id: str
    ) -> list[str]:
        try:
            revoked = await self.storage.delete_user(user_id, _now())
        except LastAdmin:
            raise errors.last_admin() from None
        if revoked is None:
            raise errors.user_not_found()
        self.remember_revoked(revoked)
        self._event(
            "user_deleted",
            caller,
            user_id=user_id,
            by=actor.user_id,
            revoked_sessions=len(revoked),
        )
        return revoked

    # sessions

    @_counting_rate_limited_signins
    async def signin(
        self,
        caller: Caller,
        *,
        password: str,
        username: str | None = None,
        email: str | None = None,
    ) -> SignedIn:
        """A new session for the right password. An unknown login and a wrong password
        get the same answer after the same work. Rate limits count the login name as
        typed (see `ratelimit`), before the password is hashed."""
        if username is not None:
            name = login_key(USERNAME, username)
            # A look-alike that sign-up would refuse (full-width letters) finds nobody.
            user = (
                await self.storage.find_user(username=username)
                if USERNAME_RULE.fullmatch(username)
                else None
            )
        else:
            name = login_key(EMAIL, email or "")
            user = await self.storage.find_user(email=email)
        with self._admit(self.limiter.hash_caps(caller.limit_key, name)) as hashing:
            attempt = await self.limiter.begin_signin(
                name, user.id if user else None, caller.limit_key
            )
            matched = await self._password_matches(hashing, password, user)
            if user is None or not matched:
                await attempt.failed()
                self._event(
                    "signin_failed",
                    caller,
                    level=logging.WARNING,
                    user_id=user.id if user else None,
                )
                raise errors.invalid_credentials()
            await attempt.succeeded()
        if user.disabled:  # said only to whoever knows the password
            self._event("signin_refused", caller, user_id=user.id, reason="disabled")
            raise errors.account_disabled()
        session_id, refresh_token = await self._start_session(caller, user)
        self._event("signin", caller, user_id=user.id, session_id=session_id)
        return SignedIn(
            user,
            session_id,
            self.access_tokens.issue(user, session_id),
            refresh_token,
            self.settings.tokens.access_ttl,
        )

    async def _start_session(self, caller: Caller, user: User) -> tuple[str, str]:
        """The session is created only if, in the same transaction, the user still
        exists, is not disabled and still has the password hash that was verified: a
        sign-in racing a password change, a deletion or a disable gets nothing."""
        refresh_token, started = self.refresh_tokens.mint(), _now()
        session = NewSession(
            id=new_session_id(),
            user_id=user.id,
            token_hash=self.refresh_tokens.digest(refresh_token),
            created_at=started,
            expires_at=started + self.settings.tokens.refresh_ttl,
            user_agent=caller.user_agent,
            ip=caller.ip,
        )
        if not await self.storage.create_session(session, user.password_hash):
            self.metrics.signin(SigninResult.FAILURE)  # the password changed meanwhile
            raise errors.invalid_credentials()
        return session.id, refresh_token

    async def refresh(self, caller: Caller, presented: str | None) -> Refreshed:
        """A new access token for a live refresh token, rotating it when configured."""
        if not presented:
            self.metrics.refresh(MISSING)
            raise errors.refresh_missing()
        await self.limiter.hit_refresh(caller.limit_key)
        tokens = self.settings.tokens
        successor = (
            self.refresh_tokens.successor(presented) if tokens.rotate_refresh else None
        )
        started = clock.now()  # sub-second: the reuse interval is exact
        result = await self.storage.use_refresh_token(
            RefreshRequest(
                token_hash=self.refresh_tokens.digest(presented),
                successor_hash=(
                    self.refresh_tokens.digest(successor) if successor else None
                ),
                now=started,
                expires_at=int(started) + tokens.refresh_ttl,
                reuse_interval=tokens.reuse_interval,
                strict=tokens.strict_rotation,
            )
        )
        self.metrics.refresh(result.outcome)
        self._refuse_failed_refresh(caller, result)
        assert result.user is not None and result.session_id is not None
        return Refreshed(
            result.user,
            result.session_id,
            self.access_tokens.issue(result.user, result.session_id),
            successor or presented,
            successor is not None,
            tokens.access_ttl,
        )

    def _refuse_failed_refresh(self, caller: Caller, result: RefreshResult) -> None:
        outcome = result.outcome
        if outcome.succeeded:
            return
        known = self._known_revoked(result.session_id)
        if result.session_id is not None and outcome in (
            RefreshOutcome.REUSED,
            RefreshOutcome.REVOKED,
        ):
            self.remember_revoked([result.session_id])
        if outcome is RefreshOutcome.REUSED:
            self._event(
                "refresh_reused",
                caller,
                level=logging.WARNING,
                user_id=result.user.id if result.user else None,
                session_id=result.session_id,
                revoked_sessions=0 if known else 1,
            )
        raise _REFRESH_ERRORS[outcome]()

    async def signout(self, caller: Caller, presented: str | None) -> str | None:
        """Revoke the session of a refresh token; idempotent. The session id, if any."""
        if not presented:
            raise errors.refresh_missing()
        await self.limiter.hit_signout(caller.limit_key)
        revoked = await self.storage.revoke_session(
            self.refresh_tokens.digest(presented), RevokeReason.SIGNOUT, _now()
        )
        if revoked is None:
            return None
        if revoked.was_live:
            self.remember_revoked([revoked.session_id])
            self._event(
                "signout",
                caller,
                user_id=revoked.user_id,
                session_id=revoked.session_id,
            )
        return revoked.session_id

    async def signout_session(self, caller: Caller, claims: AccessClaims) -> bool:
        """Revoke the session of an access token (a sign-out that has no refresh token
        at hand). False if it was no longer live."""
        revoked = await self.storage.revoke_user_session(
            claims.user_id, claims.session_id, RevokeReason.SIGNOUT, _now()
        )
        if revoked:
            self.remember_revoked([claims.session_id])
            self._event(
                "signout", caller, user_id=claims.user_id, session_id=claims.session_id
            )
        return revoked

    async def change_password(
        self, caller: Caller, claims: AccessClaims, current: str, new: str
    ) -> None:
        """Set a new password and revoke every other session of the user. A wrong
        current password is limited like a failed sign-in. The hash is stored only if
        it is still the one checked: of two changes racing from the same password, the
        later write is refused as a wrong current password (it is no longer current)."""
        self._check_new_password(new, "newPassword")
        user = await self.current_user(claims)
        name = login_key(USERNAME, user.username)  # guesses share sign-in's budget
        with self._admit(self.limiter.hash_caps(caller.limit_key, name)) as hashing:
            attempt = await self.limiter.begin_signin(
                name, user.id, caller.limit_key, count_success=False
            )
            if not await self._password_matches(hashing, current, user):
                await attempt.failed()
                self._password_change_failed(caller, claims)
                raise errors.wrong_current_password()
            await attempt.succeeded()
            new_hash = await self._hash_new_password(
                caller, new, [user.username, user.email], "newPassword", hashing
            )
        revoked = await self.storage.change_password(
            user.id, user.password_hash, new_hash, claims.session_id, _now()
        )
        if revoked is None:
            await self._password_changed_meanwhile(caller, claims)
            raise errors.wrong_current_password()
        self.remember_revoked(revoked)
        self._event(
            "password_changed",
            caller,
            user_id=user.id,
            session_id=claims.session_id,
            revoked_sessions=len(revoked),
        )

    async def _password_changed_meanwhile(
        self, caller: Caller, claims: AccessClaims
    ) -> None:
        """The checked hash was replaced (or the user deleted) before ours was stored:
        logged as a failed change; a deleted user's token is `token_revoked`."""
        self._password_change_failed(caller, claims, reason="changed_meanwhile")
        await self.current_user(claims)

    def _password_change_failed(
        self, caller: Caller, claims: AccessClaims, **fields: object
    ) -> None:
        self._event(
            "password_change_failed",
            caller,
            level=logging.WARNING,
            user_id=claims.user_id,
            session_id=claims.session_id,
            **fields,
        )

    def _known_revoked(self, session_id: str | None) -> bool:
        """Whether this process already knew the session to be revoked (by itself or,
        through the poll, by another instance): then a refresh found it revoked for
        reuse earlier, and revoked nothing now. (The storage does not say; after
        `tokens.revocation_ttl` a late replay of the stolen token counts again.)"""
        return session_id is not None and session_id in self.revocations

    def remember_revoked(self, session_ids: list[str]) -> None:
        """Refuse this process's access tokens of these sessions at once; other processes
        learn of them from storage within `tokens.revocation_poll`."""
        until = _now() + self.settings.tokens.revocation_ttl
        for session_id in session_ids:
            self.revocations.add(session_id, until)

    # accounts: a user's devices, and user administration

    async def sessions(self, claims: AccessClaims) -> list[SessionInfo]:
        """The caller's live sessions, newest first."""
        return await self.storage.list_sessions(claims.user_id, _now())

    async def revoke_own_session(
        self, caller: Caller, claims: AccessClaims, session_id: str
    ) -> None:
        """End one of the caller's live sessions (its current one too: a sign-out).
        Unknown, another user's and no longer live answer alike, so nothing is learned
        about other users' sessions."""
        reason = RevokeReason.SESSION_REVOKED
        if not await self.storage.revoke_user_session(
            claims.user_id, session_id, reason, _now()
        ):
            raise errors.session_not_found()
        self._sessions_revoked(
            caller,
            reason,
            [session_id],
            user_id=claims.user_id,
            session_id=claims.session_id,
            revoked_session=session_id,
        )

    async def revoke_other_sessions(self, caller: Caller, claims: AccessClaims) -> int:
        """End every session of the caller but the current one; how many."""
        reason = RevokeReason.OTHERS_REVOKED
        revoked = await self.storage.revoke_other_sessions(
            claims.user_id, claims.session_id, reason, _now()
        )
        self._sessions_revoked(
            caller,
            reason,
            revoked,
            user_id=claims.user_id,
            session_id=claims.session_id,
        )
        return len(revoked)

    async def list_users(
        self, *, limit: int, cursor: str | None = None, query: str | None = None
    ) -> paging.UsersPage:
        """One page of users by (created_at, id); `cursor` is the previous page's
        `next`, `query` a substring of the username or email (any case)."""
        after = paging.decode_cursor(cursor) if cursor else None
        found = await self.storage.list_users(limit + 1, after, query or None)
        return paging.page_of(found, limit)

    async def get_user(self, user_id: str) -> User:
        user = await self.storage.get_user(user_id)
        if user is None:
            raise errors.user_not_found()
        return user

    async def update_user(
        self,
        caller: Caller,
        actor: AccessClaims,
        user_id: str,
        *,
        roles: list[str] | None = None,
        disabled: bool | None = None,
    ) -> User:
        """Set a user's roles (every user keeps `user`) and/or disabled flag. Disabling
        or taking a role away revokes every session of the user in the same storage
        call (their access tokens carry the old roles); a role given revokes nothing."""
        if roles is None and disabled is None:
            raise errors.validation_error("roles or disabled is required")
        wanted = requested_roles(roles) if roles is not None else None
        try:
            update = await self.storage.update_user(
                user_id, roles=wanted, disabled=disabled, now=_now()
            )
        except LastAdmin:
            raise errors.last_admin() from None
        if update is None:
            raise errors.user_not_found()
        user = update.user
        self._event(
            "user_updated",
            caller,
            user_id=user_id,
            by=actor.user_id,
            roles=list(user.roles),
            disabled=user.disabled,
        )
        if update.revoked:
            reason = (
                RevokeReason.USER_DISABLED
                if user.disabled
                else RevokeReason.ROLE_REMOVED
            )
            self._sessions_revoked(
                caller, reason, update.revoked, user_id=user_id, by=actor.user_id
            )
        return user

    def _sessions_revoked(
        self,
        caller: Caller,
        reason: RevokeReason,
        session_ids: list[str],
        **fields: object,
    ) -> None:
        """The one place where the revocations above are accounted for: this process
        refuses their access tokens at once (others learn them from storage) and the
        security event is logged under the reason's name."""
        self.remember_revoked(session_ids)
        self._event(reason.value, caller, revoked_sessions=len(session_ids), **fields)

    # passwords

    def _check_new_password(self, password: str, field: str) -> None:
        try:
            check_length(password, self.settings.passwords, field)
        except WeakPassword as exc:
            raise errors.validation_error(str(exc)) from None

    def _admit(self, caps: Mapping[str, int]) -> Admission:
        """A place in the hashing queue within the caller's caps, or 429 at once."""
        try:
            return self.passwords.admit(caps)
        except HashingBusy:
            raise errors.rate_limited(BUSY_RETRY_SECONDS) from None

    async def _hash_new_password(
        self,
        caller: Caller,
        password: str,
        user_inputs: list[str],
        field: str = "password",
        hashing: Admission | None = None,
    ) -> str:
        """Judge and hash a new password; a caller not yet admitted is admitted under
        its address's cap."""
        try:
            if hashing is not None:
                return await hashing.hash_new(password, user_inputs, field)
            with self._admit(self.limiter.hash_caps(caller.limit_key)) as admitted:
                return await admitted.hash_new(password, user_inputs, field)
        except WeakPassword as exc:
            raise errors.validation_error(str(exc)) from None

    @staticmethod
    async def _password_matches(
        hashing: Admission, password: str, user: User | None
    ) -> bool:
        """The same work for an unknown user (a dummy hash) as for a wrong password."""
        return await hashing.verify(password, user.password_hash if user else None)

    def _event(
        self,
        event: str,
        caller: Caller,
        *,
        level: int = logging.INFO,
        **fields: object,
    ) -> None:
        """Log a security event and count it (`Metrics.event`): one call for both, so
        the log and the metrics cannot disagree. An event that revokes sessions says
        how many in `revoked_sessions`."""
        self.metrics.event(event, fields)
        log_event(
            event,
            level=level,
            ip=caller.ip,
            user_agent=caller.user_agent,
            route=caller.route,
            **fields,
        )


_REFRESH_ERRORS = {
    RefreshOutcome.UNKNOWN: errors.refresh_unknown,
    RefreshOutcome.EXPIRED: errors.refresh_expired,
    RefreshOutcome.REVOKED: errors.refresh_revoked,
    RefreshOutcome.REUSED: errors.refresh_reused,
}


def new_session_id() -> str:
    """32 hex digits that sort as the sessions were started: the milliseconds since the
    epoch, then 80 random bits. Sessions are listed newest first by (createdAt, id), and
    createdAt is whole seconds."""
    return f"{int(clock.now() * 1000):012x}{secrets.token_hex(10)}"


def requested_roles(requested: list[str] | None) -> tuple[str, ...]:
    """Every user has `user`; roles are kept in a fixed order. Unknown names are
    `unknown_role` whoever asks."""
    for name in requested or ():
        if name not in Role._value2member_map_:
            raise errors.unknown_role(name)
    names = set(requested or ())
    return tuple(
        role.value for role in Role if role is Role.USER or role.value in names
    )


def _is_admin(claims: AccessClaims | None) -> bool:
    return claims is not None and Role.ADMIN.value in claims.roles


def _now() -> int:
    return clock.epoch()
