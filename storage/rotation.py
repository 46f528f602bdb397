"""The refresh-token decision, shared by every backend so that all of them agree.

A backend reads the token's state, calls `decide`, and carries out the returned action in
one transaction. An outcome whose action is NONE writes nothing: backends answer it from a
read, without taking a write lock (junk tokens cost no writes).
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
    retired_ms: int | None  # epoch milliseconds; None while the token is current
    successor_presented: bool  # the successor exists and has itself been retired
    user_exists: bool
    user_disabled: bool


class Action(Enum):
    NONE = "none"
    TOUCH = "touch"  # a successful use without rotation: extend the session, as rotating does
    ROTATE = "rotate"  # retire the token, insert the successor, extend the session
    DELETE_SESSION = "delete_session"
    REVOKE_FOR_REUSE = "revoke_for_reuse"
    REVOKE_USER_GONE = "revoke_user_gone"
    REVOKE_USER_DISABLED = "revoke_user_disabled"

    @property
    def revoke_reason(self) -> RevokeReason | None:
        return _REVOKE_REASONS.get(self)


_REVOKE_REASONS = {
    Action.REVOKE_FOR_REUSE: RevokeReason.REUSE,
    Action.REVOKE_USER_GONE: RevokeReason.USER_DELETED,
    Action.REVOKE_USER_DISABLED: RevokeReason.USER_DISABLED,
}


def epoch_ms(now: float) -> int:
    """Milliseconds, the resolution of retirement times."""
    return round(now * 1000)


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
    if state.user_disabled:
        return RefreshOutcome.REVOKED, Action.REVOKE_USER_DISABLED
    if state.retired_ms is None:
        if request.successor_hash is None:
            return RefreshOutcome.VALID, Action.TOUCH
        return RefreshOutcome.ROTATED, Action.ROTATE
    if request.successor_hash is not None and _replay_allowed(state, request):
        return RefreshOutcome.REPLAYED, Action.TOUCH
    # A retired token with rotation off is reuse too: switching rotation off must not
    # revive tokens that may have been stolen.
    return RefreshOutcome.REUSED, Action.REVOKE_FOR_REUSE


def _replay_allowed(state: TokenState, request: RefreshRequest) -> bool:
    assert state.retired_ms is not None
    age_ms = epoch_ms(request.now) - state.retired_ms
    in_grace = request.reuse_interval > 0 and age_ms <= request.reuse_interval * 1000
    return in_grace or not (request.strict or state.successor_presented)
