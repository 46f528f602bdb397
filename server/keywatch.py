"""Keeping a process's signing keys in step with the key file.

Every `tokens.key_reload_interval` the file is read again (in a thread): keys published
by `run.py rotate-key` or another instance join the ring (verifying and in the JWKS at
once, signing from their `active_from`), keys past their window leave it, and with
`tokens.key_rotation_days` a new key is published when the signer is old enough.

A token whose `kid` the ring does not know triggers one extra read before it is refused
(`AccessTokens.verify_reloaded` awaits `reload_soon`): at most one read starts per
`UNKNOWN_KID_GAP` seconds whatever the number of such tokens, and concurrent callers
share it, so forged `kid`s cannot make the server read the file in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from . import clock, signing_keys
from .events import log_event
from .settings import Settings, SettingsError
from .tokens import AccessTokens

logger = logging.getLogger("auth.server")
UNKNOWN_KID_GAP = 1.0


class KeyWatcher:
    """Reloads one process's key ring: on a timer, and on demand (throttled)."""

    def __init__(self, settings: Settings, tokens: AccessTokens) -> None:
        self._settings = settings
        self._tokens = tokens
        self._inflight: asyncio.Future[None] | None = None
        self._last_start = -UNKNOWN_KID_GAP
        self.reloads = 0  # completed reads of the key file, for tests and metrics

    async def run(self) -> None:
        """Reload forever, one interval apart; the first reload is immediate (a key
        published between this process's first read and now is not missed)."""
        tokens = self._tokens
        tokens.reload_hook = self.reload_soon
        try:
            while True:
                await self._join(throttled=False)
                await asyncio.sleep(self._settings.tokens.key_reload_interval)
        finally:
            tokens.reload_hook = None

    async def reload_soon(self) -> None:
        """Reload the key file, at most once per UNKNOWN_KID_GAP, and wait for it.
        Concurrent callers share one reload; a failed reload is logged, never raised."""
        await self._join(throttled=True)

    async def _join(self, throttled: bool) -> None:
        """Wait for the reload in flight, or start one (after the gap if throttled)."""
        if self._inflight is None:
            reload = self._throttled_reload() if throttled else self._reload_now()
            self._inflight = asyncio.ensure_future(reload)
            self._inflight.add_done_callback(self._finished)
        with contextlib.suppress(Exception):  # logged by _reload; the ring stays
            await asyncio.shield(self._inflight)

    def _finished(self, future: asyncio.Future[None]) -> None:
        self._inflight = None
        if not future.cancelled():
            future.exception()  # retrieved: logged by _reload

    async def _throttled_reload(self) -> None:
        wait = self._last_start + UNKNOWN_KID_GAP - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        await self._reload_now()

    async def _reload_now(self) -> None:
        self._last_start = asyncio.get_running_loop().time()
        await self._reload()

    async def _reload(self) -> None:
        try:
            ring = await asyncio.to_thread(self._read)
        except SettingsError as exc:  # the file's own message names it and the fix
            logger.error("signing keys not reloaded: %s", exc)
            raise
        except Exception:
            logger.exception("signing keys not reloaded")
            raise
        before = self._tokens.ring.pending
        self._tokens.ring = ring
        self.reloads += 1
        pending = ring.pending
        if pending and (before is None or before[0].kid != pending[0].kid):
            key, starts = pending
            logger.info("signing key %s loaded; it signs from %s", key.kid, starts)

    def _read(self) -> signing_keys.KeyRing:
        """In a thread: the file's ring now, after publishing a scheduled key if due."""
        settings = self._settings
        tokens = settings.tokens
        days = tokens.key_rotation_days
        if days and not signing_keys.is_configured(tokens):
            now = clock.epoch()
            ring = signing_keys.load_key_ring(settings, now)
            signer = ring.signer(now)
            if (
                ring.pending is None
                and _signing_since(ring, signer) + days * 86400 <= now
            ):
                ring = signing_keys.rotate(
                    settings,
                    now,
                    days * 86400,
                    delay=signing_keys.publish_delay(tokens),
                )
                if ring.pending is not None:
                    key, starts = ring.pending
                    log_event(
                        "key_rotated",
                        level=logging.WARNING,
                        kid=key.kid,
                        active_from=starts,
                        scheduled=True,
                    )
            return ring
        return signing_keys.load_key_ring(settings)


def _signing_since(ring: signing_keys.KeyRing, key: signing_keys.SigningKey) -> int:
    record = next(r for r in ring.records if r.kid == key.kid)
    return record.starts


async def maintain_keys(settings: Settings, tokens: AccessTokens) -> None:
    """The app's background task: keep `tokens.ring` current until cancelled. Keys set
    by `tokens.secret` or `tokens.private_key_file` never change: nothing to do."""
    if signing_keys.is_configured(settings.tokens):
        return
    await KeyWatcher(settings, tokens).run()
