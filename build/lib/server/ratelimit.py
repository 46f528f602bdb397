"""Rate limits, kept in storage so that they hold across processes and instances.

Sign-in failures are limited three ways (OWASP authentication cheat sheet, ASVS 2.2.1):
- per client address, against password spraying from one place;
- per account and address, against guessing one account from one place;
- per account from addresses that never signed into it, at most 100 an hour, against
  distributed guessing. An address that signed into the account recently is "known" and
  is not subject to this limit, so an attacker elsewhere cannot lock the owner out.
Sign-up and refresh have a per-address limit of their own.
"""

from __future__ import annotations

import hashlib

from storage import Storage, User

from . import clock
from .errors import rate_limited
from .settings import RateLimitSettings


def account_key(user: User | None, login: str) -> str:
    """What sign-in limits count against: the user's id, or for an unknown login a digest
    of it (bounded, and free of characters a database might refuse)."""
    if user is not None:
        return user.id
    return "login:" + hashlib.sha256(login.casefold().encode()).hexdigest()[:32]


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage

    async def check_signin(self, account: str, address: str) -> None:
        """Raise 429 if this sign-in must not even be tried (no bcrypt is spent)."""
        if not self.settings.enabled:
            return
        s, now = self.settings, _now()
        await self._refuse_over(f"signin-ip:{address}", s.signin_ip_limit, now)
        await self._refuse_over(
            f"signin-pair:{account}:{address}", s.signin_pair_limit, now
        )
        if not await self._known(account, address, now):
            await self._refuse_over(
                f"signin-account:{account}", s.signin_account_limit, now
            )

    async def signin_failed(self, account: str, address: str) -> None:
        if not self.settings.enabled:
            return
        s, now = self.settings, _now()
        await self.storage.hit_counter(f"signin-ip:{address}", s.signin_ip_window, now)
        await self.storage.hit_counter(
            f"signin-pair:{account}:{address}", s.signin_pair_window, now
        )
        if not await self._known(account, address, now):
            await self.storage.hit_counter(
                f"signin-account:{account}", s.signin_account_window, now
            )

    async def signin_succeeded(self, account: str, address: str) -> None:
        """Trust the address for this account, and forget its typos."""
        if not self.settings.enabled:
            return
        now = _now()
        await self.storage.delete_counter(f"known:{account}:{address}")
        await self.storage.hit_counter(
            f"known:{account}:{address}", self.settings.known_address_ttl, now
        )
        await self.storage.delete_counter(f"signin-pair:{account}:{address}")

    async def hit_signup(self, address: str) -> None:
        s = self.settings
        await self._hit(f"signup:{address}", s.signup_ip_limit, s.signup_ip_window)

    async def hit_refresh(self, address: str) -> None:
        s = self.settings
        await self._hit(f"refresh:{address}", s.refresh_ip_limit, s.refresh_ip_window)

    async def _hit(self, key: str, limit: int, window: int) -> None:
        if not self.settings.enabled:
            return
        now = _now()
        counter = await self.storage.hit_counter(key, window, now)
        if counter.count > limit:
            raise rate_limited(counter.reset_at - now)

    async def _refuse_over(self, key: str, limit: int, now: int) -> None:
        counter = await self.storage.read_counter(key, now)
        if counter.count >= limit:
            raise rate_limited(counter.reset_at - now)

    async def _known(self, account: str, address: str, now: int) -> bool:
        return (
            await self.storage.read_counter(f"known:{account}:{address}", now)
        ).count > 0


def _now() -> int:
    return clock.epoch()
