"""A user's devices: list its live sessions, end one, end all the others."""

from __future__ import annotations

from aiohttp import web

from storage import SessionInfo

from .. import keys
from ..caller import Caller
from ..clock import iso_utc
from ..guards import current_claims
from .common import json_ok


async def list_sessions(request: web.Request) -> web.Response:
    claims = current_claims(request)
    found = await request.app[keys.AUTH].service.sessions(claims)
    return json_ok({"sessions": [session_record(s, claims.session_id) for s in found]})


async def revoke_session(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].service.revoke_own_session(
        Caller.of(request), current_claims(request), request.match_info["id"]
    )
    return json_ok({"message": "Session revoked."})


async def revoke_other_sessions(request: web.Request) -> web.Response:
    revoked = await request.app[keys.AUTH].service.revoke_other_sessions(
        Caller.of(request), current_claims(request)
    )
    return json_ok({"message": "Other sessions revoked.", "revoked": revoked})


def session_record(session: SessionInfo, current_id: str) -> dict[str, object]:
    """A session as its user sees it; an empty User-Agent is as unknown as none."""
    return {
        "id": session.id,
        "current": session.id == current_id,
        "createdAt": iso_utc(session.created_at),
        "lastUsedAt": iso_utc(session.last_used_at),
        "expiresAt": iso_utc(session.expires_at),
        "userAgent": session.user_agent or None,
        "ip": session.ip or None,
    }
