"""Small helpers shared by handlers."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from storage import User

from .. import clock
from ..guards import Role


def now() -> int:
    return clock.epoch()


def role_names(user: User) -> list[str]:
    """Roles as the seeds answer them: ["ROLE_USER", ...], in a fixed order."""
    return [role.response_name for role in Role if role.value in user.roles]


def iso_utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_ok(body: dict, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)
