"""The roles: the one list of their names, and how the seeds spell them."""

from __future__ import annotations

from enum import StrEnum


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


ROLE_NAMES = tuple(role.value for role in Role)
