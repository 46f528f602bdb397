"""The signed-in user's profile, and user deletion by an admin."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..caller import Caller
from ..guards import current_claims
from .common import json_ok, user_record


async def me(request: web.Request) -> web.Response:
    user = await request.app[keys.AUTH].service.current_user(current_claims(request))
    return json_ok(user_record(user))


async def delete_user(request: web.Request) -> web.Response:
    """Admins only (route table). Revokes every session of the user at once."""
    await request.app[keys.AUTH].service.delete_user(
        Caller.of(request), current_claims(request), request.match_info["id"]
    )
    return json_ok({"message": "User was deleted."})
