"""Small helpers shared by handlers."""

from __future__ import annotations

from aiohttp import web

from storage import User

from .. import clock
from ..clock import iso_utc
from ..guards import Role


def now() -> int:
    return clock.epoch()


def role_names(user: User) -> list[str]:
    """Roles as the seeds answer them: ["ROLE_USER", ...], in a fixed order."""
    return [role.response_name for role in Role if role.value in user.roles]


def json_ok(body: dict, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def user_record(user: User) -> dict[str, object]:
    """API.md's `<user>`, the one shape of a user in every answer: never a hash."""
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "roles": role_names(user),
        "disabled": user.disabled,
        "createdAt": iso_utc(user.created_at),
    }
