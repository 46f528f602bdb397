"""The core contract's auth routes: parse the body, call the service, shape the answer."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..bodies import read_body
from ..caller import Caller
from ..guards import current_claims
from ..middleware import ConflictingTokens, read_access_token
from ..schemas import PasswordChangeBody, RefreshBody, SigninBody, SignupBody
from ..service import Refreshed, SignedIn
from ..tokens import AccessClaims
from . import browser
from .common import json_ok, role_names


async def signup(request: web.Request) -> web.Response:
    auth = request.app[keys.AUTH]
    body = await read_body(request, SignupBody)
    user = await auth.service.signup(
        Caller.of(request),
        username=body.username,
        email=body.email,
        password=body.password,
        roles=body.roles,
        granted_by=await _optional_claims(request),
    )
    return json_ok(
        {"message": "User was registered successfully!", "id": user.id}, status=201
    )


async def _optional_claims(request: web.Request) -> AccessClaims | None:
    """Sign-up is public: a missing, bad or expired token only means "not an admin"."""
    try:
        token = read_access_token(request)
    except ConflictingTokens:
        return None
    return await request.app[keys.AUTH].service.claims_or_none_async(token)


async def signin(request: web.Request) -> web.Response:
    auth = request.app[keys.AUTH]
    body = await read_body(request, SigninBody)
    signed_in = await auth.service.signin(
        Caller.of(request),
        username=body.username,
        email=body.email,
        password=body.password,
    )
    user = signed_in.user
    profile = {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "roles": role_names(user),
    }
    if body.cookie:
        return await browser.signed_in(request, profile, signed_in)
    return json_ok({**profile, **token_body(signed_in)})


def token_body(tokens: SignedIn | Refreshed) -> dict[str, object]:
    return {
        "accessToken": tokens.access_token,
        "refreshToken": tokens.refresh_token,
        "tokenType": "Bearer",
        "expiresIn": tokens.expires_in,
    }


async def refresh(request: web.Request) -> web.Response:
    """Any access token sent along is ignored, and every failure is 403: the seeds'
    clients answer a 401 here by refreshing again, forever."""
    body = await read_body(request, RefreshBody)
    if browser.wants_cookie(request, body.refreshToken):
        return await browser.refresh(request)
    refreshed = await request.app[keys.AUTH].service.refresh(
        Caller.of(request), body.refreshToken
    )
    return json_ok(token_body(refreshed))


async def signout(request: web.Request) -> web.Response:
    """Idempotent: an unknown or already revoked token is signed out too."""
    body = await read_body(request, RefreshBody)
    if browser.wants_cookie(request, body.refreshToken):
        return await browser.signout(request)
    await request.app[keys.AUTH].service.signout(Caller.of(request), body.refreshToken)
    return json_ok({"message": "You've been signed out!"})


async def change_password(request: web.Request) -> web.Response:
    """400, never 401, for a wrong current password: clients read 401 as "refresh"."""
    body = await read_body(request, PasswordChangeBody)
    await request.app[keys.AUTH].service.change_password(
        Caller.of(request),
        current_claims(request),
        body.currentPassword,
        body.newPassword,
    )
    return json_ok({"message": "Password changed."})
