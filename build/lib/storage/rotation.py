"""The refresh-token decision, shared by every backend so that all of them agree.

A backend reads the token's state in its transaction, calls `decide`, then carries out
the returned action in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .models import RefreshOutcome, RefreshRequest, RevokeReason


@dataclass(frozen=True)
class TokenState:
    """What a backend reads about one presented refresh token."""

    session_id: str
    session_expires_at: int
    revoke_reason: str | None  # None while the session is live
    retired_at: int | None  # None while the token is current
    successor_presented: bool  # the successor exists and has itself been retired
    user_exists: bool


class Action(Enum):
    NONE = "none"
    ROTATE = "rotate"  # retire the token, insert the successor, extend the session
    DELETE_SESSION = "delete_session"
    REVOKE_FOR_REUSE = "revoke_for_reuse"
    REVOKE_USER_GONE = "revoke_user_gone"


def decide(
    state: TokenState | None, request: RefreshRequest
) -> tuple[RefreshOutcome, Action]:
    """The outcome of presenting a token in `state`, and what to write for it."""
    if state is None:
        return RefreshOutcome.UNKNOWN, Action.NONE
    if state.revoke_reason is not None:
        reused = state.revoke_reason == RevokeReason.REUSE
        return (
            RefreshOutcome.REUSED if reused else RefreshOutcome.REVOKED
        ), Action.NONE
    if state.session_expires_at <= request.now:
        return RefreshOutcome.EXPIRED, Action.DELETE_SESSION
    if not state.user_exists:
        return RefreshOutcome.REVOKED, Action.REVOKE_USER_GONE
    if request.successor_hash is None:
        return RefreshOutcome.VALID, Action.NONE
    if state.retired_at is None:
        return RefreshOutcome.ROTATED, Action.ROTATE
    in_grace = request.now - state.retired_at <= request.reuse_interval
    if in_grace or not (request.strict or state.successor_presented):
        return RefreshOutcome.REPLAYED, Action.NONE
    return RefreshOutcome.REUSED, Action.REVOKE_FOR_REUSE
