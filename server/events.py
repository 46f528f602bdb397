"""Security events: one JSON line each on the `auth.security` logger.

Every line has `event`, `ts` (epoch seconds), `ip` and `user_agent`, plus `user_id` and
`session_id` where known. Never a token, password or hash. Events: signup, signin,
signin_failed, refresh_reused, signout, password_changed, user_deleted, rate_limited,
key_rotated, csrf_failed (cookie mode: a request spending the session cookie without
the right X-CSRF-Token or from a foreign origin). Alert on `refresh_reused`: it means a refresh token was stolen or replayed.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from . import clock
from .clientaddr import address_of

logger = logging.getLogger("auth.security")
MAX_USER_AGENT = 256


def log_event(
    event: str,
    request: web.Request | None = None,
    *,
    level: int = logging.INFO,
    **fields: object,
) -> None:
    record: dict[str, object] = {"event": event, "ts": clock.epoch()}
    if request is not None:
        record["ip"] = address_of(request)
        record["user_agent"] = request.headers.get("User-Agent", "")[:MAX_USER_AGENT]
    record.update({k: v for k, v in fields.items() if v is not None})
    logger.log(level, json.dumps(record, ensure_ascii=True))
