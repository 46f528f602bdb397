"""The account-change decisions, shared by every backend so that all of them agree:
what a role or disabled change makes of a user, whether it takes away the last enabled
admin, and which sessions it revokes."""

from __future__ import annotations

from dataclasses import replace

from .models import RevokeReason, User

ADMIN = "admin"


def is_enabled_admin(user: User) -> bool:
    return ADMIN in user.roles and not user.disabled


def updated(user: User, roles: tuple[str, ...] | None, disabled: bool | None) -> User:
    """The user with the new roles and/or disabled flag (None: unchanged)."""
    return replace(
        user,
        roles=user.roles if roles is None else tuple(roles),
        disabled=user.disabled if disabled is None else disabled,
    )


def needs_another_admin(before: User, after: User | None) -> bool:
    """The change (None: deletion) takes an enabled admin away: it may only pass while
    another enabled admin exists."""
    return is_enabled_admin(before) and (after is None or not is_enabled_admin(after))


def revoke_reason(before: User, after: User) -> RevokeReason | None:
    """Why the user's sessions end with this change, or None if they stay: a disabled
    user keeps none; a role taken away ends every session (their access tokens carry
    the old roles); a role given takes effect at the next refresh."""
    if after.disabled:
        return RevokeReason.USER_DISABLED
    if set(before.roles) - set(after.roles):
        return RevokeReason.ROLE_REMOVED
    return None
