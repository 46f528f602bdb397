"""Route guards: which role a handler needs, declared once where the route is declared.

    @requires(Role.ADMIN)          # or auth.requires("admin")
    async def handler(request): ...

The auth middleware reads the declaration and checks the access token before the handler
runs; handlers never re-check roles themselves. The mark is an attribute on the handler
itself: no wrapper, no extra call per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from . import keys
from .roles import Role
from .tokens import AccessClaims

H = TypeVar("H")
GUARD_ATTRIBUTE = "__auth_required_role__"


def requires(role: Role | str = Role.USER) -> Callable[[H], H]:
    """Mark a handler (a function or a web.View class) as needing a signed-in user with
    `role` (the default, `user`: any signed-in user). Unknown role names raise at once."""
    required = Role(role)

    def mark(handler: H) -> H:
        setattr(handler, GUARD_ATTRIBUTE, required)
        return handler

    return mark


def current_claims(request: web.Request) -> AccessClaims:
    """The verified claims of a guarded request."""
    return request[keys.CLAIMS]
