"""The signed-in user's profile, and user deletion by an admin."""

from __future__ import annotations

from aiohttp import web

from .. import errors, keys
from ..events import log_event
from ..guards import current_claims
from .auth import remember_revoked
from .common import iso_utc, json_ok, now, role_names


async def me(request: web.Request) -> web.Response:
    claims = current_claims(request)
    user = await request.app[keys.STORAGE].get_user(claims.user_id)
    if user is None:
        raise errors.token_revoked()
    return json_ok(
        {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "roles": role_names(user),
            "createdAt": iso_utc(user.created_at),
        }
    )


async def delete_user(request: web.Request) -> web.Response:
    """Admins only (route table). Revokes every session of the user at once."""
    user_id = request.match_info["user_id"]
    revoked = await request.app[keys.STORAGE].delete_user(user_id, now())
    if revoked is None:
        raise errors.ApiError(404, "User not found.", errors.ErrorCode.NOT_FOUND)
    remember_revoked(request, revoked)
    log_event(
        "user_deleted",
        request,
        user_id=user_id,
        by=current_claims(request).user_id,
        revoked_sessions=len(revoked),
    )
    return json_ok({"message": "User was deleted."})
