"""Keeping the signing keys current in a running server: pick up keys rotated by
`run.py rotate-key` or another process, drop expired ones, and rotate on schedule when
`tokens.key_rotation_days` is set."""

from __future__ import annotations

import asyncio
import logging

from . import signing_keys
from .events import log_event
from .settings import Settings
from .tokens import AccessTokens

logger = logging.getLogger("auth.server")
KEY_RELOAD_SECONDS = 30


async def maintain_keys(settings: Settings, tokens: AccessTokens) -> None:
    max_age = settings.tokens.key_rotation_days * 86400
    while True:
        await asyncio.sleep(KEY_RELOAD_SECONDS)
        try:
            if max_age and not signing_keys.is_configured(settings.tokens):
                before = tokens.ring.current.kid
                ring = await asyncio.to_thread(
                    signing_keys.rotate, settings, None, max_age
                )
                if ring.current.kid != before:
                    log_event(
                        "key_rotated", level=logging.WARNING, kid=ring.current.kid
                    )
            else:
                ring = await asyncio.to_thread(signing_keys.load_key_ring, settings)
            tokens.ring = ring
        except Exception:
            logger.exception("reloading signing keys failed")
