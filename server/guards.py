"""Route guards: which role a handler needs, declared once where the route is declared.

    @requires(Role.ADMIN)
    async def handler(request): ...

The auth middleware reads the declaration; handlers never re-check roles themselves.
An embedding app decorates its own handlers the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from aiohttp import web

from . import keys
from .tokens import AccessClaims

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ROLE_ATTRIBUTE = "__auth_required_role__"


class Role(StrEnum):
    USER = "user"
    MODERATOR = "moderator"
    ADMIN = "admin"

    @property
    def response_name(self) -> str:
        """How the seeds name roles in responses: ROLE_USER, ROLE_ADMIN, ..."""
        return f"ROLE_{self.value.upper()}"

    @property
    def denied_message(self) -> str:
        return f"Require {self.value.capitalize()} Role!"


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Mark a handler as needing a signed-in user with `role` (Role.USER: any user).
    The mark is an attribute on the handler itself: no wrapper, no extra call."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _ROLE_ATTRIBUTE, role)
        return handler

    return mark


def required_role(handler: Any) -> Role | None:
    return getattr(handler, _ROLE_ATTRIBUTE, None)


def current_claims(request: web.Request) -> AccessClaims:
    """The verified claims of a guarded request."""
    return request[keys.CLAIMS]
