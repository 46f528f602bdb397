"""Rate limits: exact for sign-in, cheap for anonymous traffic.

Sign-in (and the current password of a password change) is limited in storage, so the
limits hold across processes and instances (OWASP authentication cheat sheet, ASVS
2.2.1). Failures are limited three ways:
- per client address, against password spraying from one place;
- per login name and address, against guessing one account from one place;
- per login name from addresses that never signed into its account, against
  distributed guessing. An address that signed into the account recently is "known"
  and not subject to this limit, so an attacker elsewhere cannot lock the owner out.
Successes are limited per login name and per address, since each costs a password hash,
and so are the checks in flight at once (`hash_caps`, held by `PasswordHasher.admit`),
so that one client cannot fill the hashing queue.

Every attempt is counted against all of them BEFORE its password is hashed (the new
count decides, so N concurrent attempts against a limit with k left let at most k
through) and the count the outcome did not need is taken back afterwards: a success
refunds the failure counts, a failure the success counts.

A "login name" is the username or email as typed, in canonical form (`login_key`),
never the account it names: the counters a probe moves are the same whether or not a
username and an email belong to one account, so no answer links them.

Sign-up, refresh and sign-out are limited per address by `AddressLimit`: counted in
this process's memory up to `process_share` of the limit, and only beyond that in
storage too, so junk requests cost no database write.

Every per-address limit counts the canonical rate-limit key (`Caller.limit_key`: IPv4
as such, IPv4-mapped IPv6 as IPv4, other IPv6 per `ratelimit.ipv6_prefix` network).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from storage import Counter, Storage

from . import clock
from .errors import rate_limited
from .settings import RateLimitSettings

# Addresses one `AddressLimit` remembers in memory per window; beyond, new addresses
# are counted in storage only (correct, just no longer free).
LOCAL_KEYS = 50_000  # about 250 bytes each
USERNAME = "username"
EMAIL = "email"
# Storage keys of the sign-in counters.
IP, PAIR, ACCOUNT = "signin-ip:", "signin-pair:", "signin-account:"
SUCCESS_IP, SUCCESS_ACCOUNT = "signin-ok-ip:", "signin-ok-account:"
KNOWN = "known:"


def login_key(kind: str, login: str) -> str:
    """What sign-in limits count a login name as: a digest (bounded, and free of
    characters a database might refuse) of its canonical form. Every spelling that
    finds one account gives one key (NFKC, case-folded; an email's domain in ASCII),
    so look-alike spellings share a budget. The key depends on the text alone, never
    on whether or whose account it names."""
    folded = unicodedata.normalize(
        "NFKC", unicodedata.normalize("NFKC", login).casefold()
    )
    if kind == EMAIL:
        try:
            valid = validate_email(
                login, check_deliverability=False, test_environment=True
            )
        except (EmailNotValidError, ValueError, TypeError):
            pass
        else:
            local = unicodedata.normalize("NFKC", valid.local_part).casefold()
            folded = f"{local}@{valid.ascii_domain.lower()}"
    digest = hashlib.sha256(f"{kind}:{folded}".encode()).hexdigest()[:32]
    return f"{kind}:{digest}"


@dataclass(frozen=True)
class _Limit:
    key: str
    limit: int
    window: int
    success: bool = False  # counts successes (else failures)
    typos: bool = False  # failures of one name from one address: a success forgets them


class SigninAttempt:
    """One sign-in attempt, counted against every limit before its hash. Call
    `failed()` or `succeeded()` once the password was checked."""

    def __init__(
        self,
        limiter: RateLimiter | None,
        counted: tuple[_Limit, ...] = (),
        *,
        account: str = "",
        address: str = "",
        known: Counter | None = None,
    ) -> None:
        self._limiter = limiter
        self._counted = counted
        self._account = account
        self._address = address
        self._known = known

    async def failed(self) -> None:
        """A wrong password or an unknown name: take back the success counts."""
        if self._limiter is not None:
            await self._limiter._refund([c for c in self._counted if c.success])

    async def succeeded(self) -> None:
        """Take back the failure counts, forget this address's typos of this name, and
        trust the address for the account."""
        limiter = self._limiter
        if limiter is None:
            return
        failures = [c for c in self._counted if not c.success]
        await limiter._refund([c for c in failures if not c.typos])
        for typos in [c for c in failures if c.typos]:
            await limiter.storage.delete_counter(typos.key)
        await limiter._trust(self._account, self._address, self._known)


_NOT_COUNTED = SigninAttempt(None)


@dataclass(slots=True)
class Window:
    """One address's count in this process, and until when it is refused outright."""

    count: int
    ends: int
    blocked_until: int = 0


class LocalWindows:
    """Fixed-window counters of one window length in this process's memory. Ordered
    by window end, so ended windows are dropped from the front as time goes on; at
    most `max_keys` are kept."""

    def __init__(self, window: int, max_keys: int = LOCAL_KEYS) -> None:
        self.window = window
        self.max_keys = max_keys
        self._windows: OrderedDict[str, Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def hit(self, key: str, now: int) -> Window | None:
        """Add one to `key`'s count and return its window; None when the table is
        full and `key` is new."""
        self._drop_ended(now)
        windows = self._windows
        entry = windows.get(key)
        if entry is None:
            if len(windows) >= self.max_keys:
                return None
            entry = windows[key] = Window(0, now + self.window)
        elif entry.ends <= now:  # ended, behind a later one (the clock went back)
            entry.count, entry.ends = 0, now + self.window
            windows.move_to_end(key)
        entry.count += 1
        return entry

    def _drop_ended(self, now: int) -> None:
        windows = self._windows
        while windows:
            key, entry = next(iter(windows.items()))
            if entry.ends > now:
                return
            if entry.blocked_until > now:  # still refused: a new window, in order
                entry.count, entry.ends = 0, now + self.window
                windows.move_to_end(key)
                continue
            del windows[key]


class AddressLimit:
    """A per-address limit counted in this process up to `share` of it (no storage
    call at all), then in storage as well, where every process adds to one count: an
    address gets at most `limit` requests a window from one process, and at most
    limit * (1 + share * (N - 1)) from N processes. An address found over the limit is
    refused from memory until the stored window ends, so a flood writes nothing."""

    def __init__(
        self,
        prefix: str,
        limit: int,
        window: int,
        share: float,
        storage: Storage,
        max_keys: int = LOCAL_KEYS,
    ) -> None:
        self.prefix = prefix
        self.limit = limit
        self.window = window
        self.free = int(limit * share)  # counted in memory only
        self.storage = storage
        self.local = LocalWindows(window, max_keys)

    async def hit(self, address: str, now: int) -> None:
        """Count one request; raise 429 when it is over the limit."""
        entry = self.local.hit(address, now)
        if entry is None:  # no room to count it here: storage counts it all
            counter = await self.storage.hit_counter(
                self.prefix + address, self.window, now
            )
            if counter.count > self.limit:
                raise rate_limited(counter.reset_at - now)
            return
        if entry.blocked_until > now:
            raise rate_limited(entry.blocked_until - now)
        if entry.count <= self.free:
            return
        counter = await self.storage.hit_counter(
            self.prefix + address, self.window, now
        )
        if counter.count > self.limit - self.free:
            entry.blocked_until = counter.reset_at
            raise rate_limited(counter.reset_at - now)


class RateLimiter:
    def __init__(
        self,
        settings: RateLimitSettings,
        storage: Storage,
        *,
        local_keys: int = LOCAL_KEYS,
    ) -> None:
        self.settings = settings
        self.storage = storage
        s, share = settings, settings.process_share
        self.signup = AddressLimit(
            "signup:", s.signup_ip_limit, s.signup_ip_window, share, storage, local_keys
        )
        self.refresh = AddressLimit(
            "refresh:",
            s.refresh_ip_limit,
            s.refresh_ip_window,
            share,
            storage,
            local_keys,
        )
        self.signout = AddressLimit(
            "signout:",
            s.signout_ip_limit,
            s.signout_ip_window,
            share,
            storage,
            local_keys,
        )

    # anonymous requests, per address

    async def hit_signup(self, address: str) -> None:
        if self.settings.enabled:
            await self.signup.hit(address, _now())

    async def hit_refresh(self, address: str) -> None:
        if self.settings.enabled:
            await self.refresh.hit(address, _now())

    async def hit_signout(self, address: str) -> None:
        if self.settings.enabled:
            await self.signout.hit(address, _now())

    # sign-in

    def hash_caps(self, address: str, name: str | None = None) -> Mapping[str, int]:
        """How many password checks and hashes may be in flight at once for this
        address, and for this login name (`PasswordHasher.admit`); no caps without
        rate limits."""
        if not self.settings.enabled:
            return {}
        s = self.settings
        caps = {f"address:{address}": s.max_hashes_per_address}
        if name is not None:
            caps[f"name:{name}"] = s.max_hashes_per_account
        return caps

    async def begin_signin(
        self,
        name: str,
        account: str | None,
        address: str,
        *,
        count_success: bool = True,
    ) -> SigninAttempt:
        """Count an attempt of login name `name` (`login_key`) on `account` (the user's
        id, None for nobody) from `address` against every sign-in limit, or raise 429
        without counting anything. The same storage calls whether or not `account`
        exists, so that an unknown name takes as long as a wrong password."""
        if not self.settings.enabled:
            return _NOT_COUNTED
        s, now = self.settings, _now()
        known_key = f"{KNOWN}{account or name}:{address}"
        known = await self.storage.read_counter(known_key, now)
        # The client's own budgets first, the name's shared one last: an attempt
        # refused by the former never touches the latter.
        limits = [
            _Limit(IP + address, s.signin_ip_limit, s.signin_ip_window),
            _Limit(
                f"{PAIR}{name}:{address}",
                s.signin_pair_limit,
                s.signin_pair_window,
                typos=True,
            ),
        ]
        if count_success:
            limits.append(
                _Limit(
                    SUCCESS_IP + address,
                    s.signin_success_ip_limit,
                    s.signin_success_ip_window,
                    success=True,
                )
            )
        if known.count == 0:
            limits.append(
                _Limit(ACCOUNT + name, s.signin_account_limit, s.signin_account_window)
            )
        if count_success:
            limits.append(
                _Limit(
                    SUCCESS_ACCOUNT + name,
                    s.signin_success_account_limit,
                    s.signin_success_account_window,
                    success=True,
                )
            )
        # Read first: an attempt over a limit is refused without a write, so a flood
        # of refused sign-ins takes no write lock. Then count: the new count decides.
        for limit in limits:
            counter = await self.storage.read_counter(limit.key, now)
            if counter.count >= limit.limit:
                raise rate_limited(counter.reset_at - now)
        counted: list[_Limit] = []
        for limit in limits:
            counter = await self.storage.hit_counter(limit.key, limit.window, now)
            counted.append(limit)
            if counter.count > limit.limit:  # others got there first: undo it all
                await self._refund(counted)
                raise rate_limited(counter.reset_at - now)
        return SigninAttempt(
            self,
            tuple(counted),
            account=account or "",
            address=address,
            known=known,
        )

    async def _refund(self, limits: list[_Limit]) -> None:
        now = _now()
        for limit in limits:
            await self.storage.refund_counter(limit.key, now)

    async def _trust(self, account: str, address: str, known: Counter | None) -> None:
        """Mark the address known for the account for `known_address_ttl`, renewed
        once half of it has passed (not on every sign-in: one write fewer)."""
        if not account:
            return
        now, ttl = _now(), self.settings.known_address_ttl
        known_now = known is not None and known.count > 0
        if known_now and known.reset_at - now > ttl // 2:
            return
        key = f"{KNOWN}{account}:{address}"
        if known_now:  # restart its window
            await self.storage.delete_counter(key)
        await self.storage.hit_counter(key, ttl, now)


def _now() -> int:
    return clock.epoch()
