"""Route guards: which role a handler needs, declared once where the route is declared.

    @requires(Role.ADMIN)          # or auth.requires("admin")
    async def handler(request): ...

The auth middleware reads the declaration and checks the access token before the handler
runs; handlers never re-check roles themselves. The mark is an attribute on the handler
itself: no wrapper, no extra call per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web

from . import keys
from .tokens import AccessClaims

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H")
GUARD_ATTRIBUTE = "__auth_required_role__"


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


def requires(role: Role | str = Role.USER) -> Callable[[H], H]:
    """Mark a handler (a function or a web.View class) as needing a signed-in user with
    `role` (the default, `user`: any signed-in user). Unknown role names raise at once."""
    required = Role(role)

    def mark(handler: H) -> H:
        setattr(handler, GUARD_ATTRIBUTE, required)
        return handler

    return mark


def required_role(handler: Any) -> Role | None:
    return getattr(handler, GUARD_ATTRIBUTE, None)


def current_claims(request: web.Request) -> AccessClaims:
    """The verified claims of a guarded request."""
    return request[keys.CLAIMS]


def claims_or_none(request: web.Request) -> AccessClaims | None:
    return request.get(keys.CLAIMS)
