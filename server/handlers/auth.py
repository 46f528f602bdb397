"""Sign-up, sign-in, refresh, sign-out and password change."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web

from storage import (
    EmailTaken,
    NewSession,
    RefreshOutcome,
    RefreshRequest,
    RefreshResult,
    RevokeReason,
    User,
    UsernameTaken,
)

from .. import errors, keys
from ..bodies import read_body
from ..clientaddr import address_of
from ..events import log_event
from ..guards import Role, current_claims
from ..middleware import read_access_token
from ..passwords import HashingBusy, WeakPassword, check_length
from ..ratelimit import account_key
from ..schemas import PasswordChangeBody, RefreshBody, SigninBody, SignupBody
from ..tokens import TokenError
from .common import json_ok, now, role_names

BUSY_RETRY_SECONDS = 1


async def signup(request: web.Request) -> web.Response:
    app = request.app
    body = await read_body(request, SignupBody)
    _check_new_password(request, body.password, "password")
    roles = _requested_roles(body.roles)
    if roles != (Role.USER.value,) and not _is_admin(request):
        raise errors.forbidden(Role.ADMIN.denied_message)
    storage = app[keys.STORAGE]
    await app[keys.RATE_LIMITER].hit_signup(address_of(request))
    await _refuse_taken(request, body.username, body.email)
    password_hash = await _hash_new_password(
        request, body.password, [body.username, body.email]
    )
    user = User(
        uuid.uuid4().hex, body.username, body.email, password_hash, roles, now()
    )
    try:
        await storage.create_user(user)
    except UsernameTaken:
        raise errors.username_taken() from None
    except EmailTaken:
        raise errors.email_taken() from None
    log_event("signup", request, user_id=user.id, roles=list(roles))
    return json_ok(
        {"message": "User was registered successfully!", "id": user.id}, status=201
    )


def _requested_roles(requested: list[str] | None) -> tuple[str, ...]:
    """Every user has `user`; roles are kept in a fixed order."""
    names = set(requested or ())
    for name in requested or ():
        if name not in Role._value2member_map_:
            raise errors.unknown_role(name)
    return tuple(
        role.value for role in Role if role is Role.USER or role.value in names
    )


def _is_admin(request: web.Request) -> bool:
    """Signup is public: a bad or expired token only means "not an admin"."""
    token = read_access_token(request)
    if token is None:
        return False
    try:
        claims = request.app[keys.ACCESS_TOKENS].verify(token)
    except TokenError:
        return False
    revoked = claims.session_id in request.app[keys.REVOCATIONS]
    return not revoked and Role.ADMIN.value in claims.roles


async def _refuse_taken(request: web.Request, username: str, email: str) -> None:
    """Answer 409 before spending bcrypt; create_user re-checks atomically."""
    storage = request.app[keys.STORAGE]
    if await storage.find_user(username=username):
        raise errors.username_taken()
    if await storage.find_user(email=email):
        raise errors.email_taken()


def _check_new_password(request: web.Request, password: str, field: str) -> None:
    try:
        check_length(password, request.app[keys.SETTINGS].passwords, field)
    except WeakPassword as exc:
        raise errors.validation_error(str(exc)) from None


async def _hash_new_password(
    request: web.Request, password: str, user_inputs: list[str], field: str = "password"
) -> str:
    try:
        return await request.app[keys.PASSWORDS].hash_new(password, user_inputs, field)
    except WeakPassword as exc:
        raise errors.validation_error(str(exc)) from None
    except HashingBusy:
        raise errors.rate_limited(BUSY_RETRY_SECONDS) from None


async def signin(request: web.Request) -> web.Response:
    app = request.app
    body = await read_body(request, SigninBody)
    storage, limiter = app[keys.STORAGE], app[keys.RATE_LIMITER]
    if body.username is not None:
        user = await storage.find_user(username=body.username)
        login = body.username
    else:
        user = await storage.find_user(email=body.email)
        login = body.email or ""
    account = account_key(user, login)
    address = address_of(request)
    await limiter.check_signin(account, address)
    if not await _password_matches(request, body.password, user):
        await limiter.signin_failed(account, address)
        log_event(
            "signin_failed",
            request,
            level=logging.WARNING,
            user_id=user.id if user else None,
        )
        raise errors.invalid_credentials()
    assert user is not None
    await limiter.signin_succeeded(account, address)
    session_id, refresh_token = await _start_session(request, user)
    log_event("signin", request, user_id=user.id, session_id=session_id)
    return json_ok(
        {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "roles": role_names(user),
            **_token_body(request, user, session_id, refresh_token),
        }
    )


async def _password_matches(
    request: web.Request, password: str, user: User | None
) -> bool:
    """The same work for an unknown user as for a wrong password."""
    hasher = request.app[keys.PASSWORDS]
    try:
        return await hasher.verify(password, user.password_hash if user else None)
    except HashingBusy:
        raise errors.rate_limited(BUSY_RETRY_SECONDS) from None


async def _start_session(request: web.Request, user: User) -> tuple[str, str]:
    settings = request.app[keys.SETTINGS].tokens
    refresh_tokens = request.app[keys.REFRESH_TOKENS]
    refresh_token, started = refresh_tokens.mint(), now()
    session = NewSession(
        id=uuid.uuid4().hex,
        user_id=user.id,
        token_hash=refresh_tokens.digest(refresh_token),
        created_at=started,
        expires_at=started + settings.refresh_ttl,
    )
    if not await request.app[keys.STORAGE].create_session(session, user.password_hash):
        # The password changed, or the user was deleted, since it was verified.
        raise errors.invalid_credentials()
    return session.id, refresh_token


def _token_body(
    request: web.Request, user: User, session_id: str, refresh_token: str
) -> dict:
    settings = request.app[keys.SETTINGS].tokens
    return {
        "accessToken": request.app[keys.ACCESS_TOKENS].issue(user, session_id),
        "refreshToken": refresh_token,
        "tokenType": "Bearer",
        "expiresIn": settings.access_ttl,
    }


async def refresh(request: web.Request) -> web.Response:
    """Any access token sent along is ignored, and every failure is 403: the seeds'
    clients answer a 401 here by refreshing again, forever."""
    app = request.app
    body = await read_body(request, RefreshBody)
    if not body.refreshToken:
        raise errors.refresh_missing()
    await app[keys.RATE_LIMITER].hit_refresh(address_of(request))
    settings, refresh_tokens = app[keys.SETTINGS].tokens, app[keys.REFRESH_TOKENS]
    presented = body.refreshToken
    successor = refresh_tokens.successor(presented) if settings.rotate_refresh else None
    started = now()
    result = await app[keys.STORAGE].use_refresh_token(
        RefreshRequest(
            token_hash=refresh_tokens.digest(presented),
            successor_hash=refresh_tokens.digest(successor) if successor else None,
            now=started,
            expires_at=started + settings.refresh_ttl,
            reuse_interval=settings.reuse_interval,
            strict=settings.strict_rotation,
        )
    )
    _refuse_failed_refresh(request, result)
    assert result.user is not None and result.session_id is not None
    token = successor or presented
    return json_ok(_token_body(request, result.user, result.session_id, token))


def _refuse_failed_refresh(request: web.Request, result: RefreshResult) -> None:
    outcome = result.outcome
    if outcome.succeeded:
        return
    if result.session_id is not None and outcome in (
        RefreshOutcome.REUSED,
        RefreshOutcome.REVOKED,
    ):
        remember_revoked(request, [result.session_id])
    if outcome is RefreshOutcome.REUSED:
        log_event(
            "refresh_reused",
            request,
            level=logging.WARNING,
            session_id=result.session_id,
        )
        raise errors.refresh_reused()
    raise {
        RefreshOutcome.UNKNOWN: errors.refresh_unknown,
        RefreshOutcome.EXPIRED: errors.refresh_expired,
        RefreshOutcome.REVOKED: errors.refresh_revoked,
    }[outcome]()


def remember_revoked(request: web.Request, session_ids: list[str]) -> None:
    """Refuse this process's access tokens of these sessions at once; other processes
    learn of them by polling."""
    revocations = request.app[keys.REVOCATIONS]
    until = now() + request.app[keys.SETTINGS].tokens.revocation_ttl
    for session_id in session_ids:
        revocations.add(session_id, until)


async def signout(request: web.Request) -> web.Response:
    """Idempotent: an unknown or already revoked token is signed out too."""
    body = await read_body(request, RefreshBody)
    if not body.refreshToken:
        raise errors.refresh_missing()
    token_hash = request.app[keys.REFRESH_TOKENS].digest(body.refreshToken)
    revoked = await request.app[keys.STORAGE].revoke_session(
        token_hash, RevokeReason.SIGNOUT, now()
    )
    if revoked is not None:
        remember_revoked(request, [revoked.session_id])
        log_event("signout", request, session_id=revoked.session_id)
    return json_ok({"message": "You've been signed out!"})


async def change_password(request: web.Request) -> web.Response:
    """400, never 401, for a wrong current password: clients read 401 as "refresh"."""
    claims = current_claims(request)
    body = await read_body(request, PasswordChangeBody)
    _check_new_password(request, body.newPassword, "newPassword")
    storage = request.app[keys.STORAGE]
    user = await storage.get_user(claims.user_id)
    if user is None:
        raise errors.token_revoked()
    limiter, address = request.app[keys.RATE_LIMITER], address_of(request)
    await limiter.check_signin(user.id, address)
    if not await _password_matches(request, body.currentPassword, user):
        await limiter.signin_failed(user.id, address)
        log_event(
            "password_change_failed",
            request,
            level=logging.WARNING,
            user_id=user.id,
            session_id=claims.session_id,
        )
        raise errors.wrong_current_password()
    inputs = [user.username, user.email]
    new_hash = await _hash_new_password(
        request, body.newPassword, inputs, "newPassword"
    )
    revoked = await storage.change_password(user.id, new_hash, claims.session_id, now())
    remember_revoked(request, revoked)
    log_event(
        "password_changed",
        request,
        user_id=user.id,
        session_id=claims.session_id,
        revoked_sessions=len(revoked),
    )
    return json_ok({"message": "Password changed."})
