"""Password rules and hashing. bcrypt runs in a bounded thread pool, never on the event
loop; unknown users are checked against a dummy hash so they take as long as wrong
passwords. bcrypt reads at most 72 bytes, so every password is first reduced to a
SHA-256 digest (base64, 44 bytes): all of it counts, nothing is silently truncated.

Passwords are Unicode-normalised (NFC) before they are measured, judged, hashed or
checked, so that "é" typed as one code point or as "e" plus a combining accent (as some
keyboards and operating systems send it) is the same password. Hashes made before
normalisation from a non-NFC password keep working: see `PasswordHasher.verify`.

The queue is shared fairly: a caller is admitted (`PasswordHasher.admit`) only while
fewer than `max_pending_hashes` checks are pending in all and fewer than its caps for
each of its owners (its login name, its address: see `RateLimiter.hash_caps`), so one
client cannot fill the queue and make everyone else wait or be refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import TypeVar

import bcrypt
from zxcvbn import zxcvbn

from .settings import PasswordSettings

HASH_THREAD_NICENESS = 10  # above the process's own; the event loop thread keeps that
ZXCVBN_MAX_CHARS = 72  # zxcvbn refuses longer input; a longer password is not common
T = TypeVar("T")


class WeakPassword(ValueError):
    """The password breaks a rule; the message says which, naming the field."""


class HashingBusy(Exception):
    """Too many password checks are waiting for a hashing thread, in all or for one of
    the caller's owners."""


class Match(Enum):
    """How a password checked against a hash."""

    NO = "no"
    YES = "yes"
    LEGACY = "legacy"  # only as typed, not in NFC: a hash from before normalisation


def normalise(password: str) -> str:
    """The password in Unicode NFC: one form for what looks the same. Not NFKC, which
    would merge characters users can tell apart (full-width, superscripts, ligatures)
    and so make passwords weaker."""
    return unicodedata.normalize("NFC", password)


def check_length(
    password: str, settings: PasswordSettings, field: str = "password"
) -> None:
    """Raise WeakPassword unless min_length <= characters <= max_length. The minimum
    counts the characters of the NFC form (what the user sees); the maximum, a bound
    on work, counts the text as sent."""
    if len(normalise(password)) < settings.min_length:
        raise WeakPassword(f"{field} must be at least {settings.min_length} characters")
    if len(password) > settings.max_length:
        raise WeakPassword(f"{field} must be at most {settings.max_length} characters")


def check_strength(
    password: str, settings: PasswordSettings, user_inputs: Sequence[str], field: str
) -> None:
    """Refuse common and guessable passwords (zxcvbn, judging the NFC form: its lists of
    breached passwords, words and names, keyboard patterns, repeats, dates, l33t
    substitutions, and the user's own name and email). The default `min_strength` of 2
    refuses what zxcvbn expects to be guessed in under 10^6 tries, e.g. abc12345,
    letmein123, P@ssw0rd123."""
    if settings.min_strength == 0:
        return
    text = normalise(password)[:ZXCVBN_MAX_CHARS]
    result = zxcvbn(text, user_inputs=list(user_inputs))
    if result["score"] < settings.min_strength:
        raise WeakPassword(f"{field} is too common or too easy to guess")


def _bcrypt_input(password: str) -> bytes:
    """The bytes bcrypt sees for this exact text (callers normalise first)."""
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


def _yield_to_the_loop() -> None:
    """Run this hashing thread at a lower CPU priority (Linux sets niceness per thread),
    so that during a sign-in storm the event loop thread still gets a core at once and
    other routes keep their latency. bcrypt still uses every idle cycle."""
    with contextlib.suppress(AttributeError, OSError):
        thread = threading.get_native_id()
        niceness = os.getpriority(os.PRIO_PROCESS, thread) + HASH_THREAD_NICENESS
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness))


class PasswordHasher:
    """bcrypt in its own pool, sized to leave the event loop a core."""

    def __init__(self, settings: PasswordSettings) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(
            settings.workers,
            thread_name_prefix="bcrypt",
            initializer=_yield_to_the_loop,
        )
        self._pending = 0
        self._in_flight: dict[str, int] = {}
        self._dummy_hash: bytes | None = None

    @property
    def pending(self) -> int:
        """Callers admitted (password checks and hashes) and not yet finished."""
        return self._pending

    def in_flight(self, owner: str) -> int:
        """Admitted callers of this owner not yet finished."""
        return self._in_flight.get(owner, 0)

    def admit(self, caps: Mapping[str, int] | None = None) -> Admission:
        """A place in the queue for one caller, held until the returned Admission
        exits: at most `max_pending_hashes` in all, and at most `caps[owner]` for each
        owner in `caps`. Raises HashingBusy at once, before any work, when full."""
        caps = caps or {}
        if self._pending >= self.settings.max_pending_hashes or any(
            self._in_flight.get(owner, 0) >= cap for owner, cap in caps.items()
        ):
            raise HashingBusy
        self._pending += 1
        for owner in caps:
            self._in_flight[owner] = self._in_flight.get(owner, 0) + 1
        return Admission(self, tuple(caps))

    def _release(self, owners: tuple[str, ...]) -> None:
        self._pending -= 1
        for owner in owners:
            left = self._in_flight[owner] - 1
            if left:
                self._in_flight[owner] = left
            else:
                del self._in_flight[owner]

    async def start(self) -> None:
        """Make the dummy hash at the configured cost, off the loop."""
        self._dummy_hash = (await self.hash(secrets.token_urlsafe(16))).encode()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def hash(self, password: str) -> str:
        """A bcrypt hash of the password's NFC form."""
        with self.admit() as admission:
            return await admission.hash(password)

    async def hash_new(
        self, password: str, user_inputs: Sequence[str], field: str
    ) -> str:
        """Check a new password's strength, then hash it: both in the pool, since the
        strength check is CPU-bound too. Raises WeakPassword."""
        with self.admit() as admission:
            return await admission.hash_new(password, user_inputs, field)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Check a password; with no hash (unknown user) check against the dummy hash
        and return False, taking the same time. See `check`."""
        return await self.check(password, password_hash) is not Match.NO

    async def check(self, password: str, password_hash: str | None) -> Match:
        """Check the NFC form; when it fails and the password as typed is not in NFC,
        check it as typed too, so that a hash made before normalisation still matches
        (Match.LEGACY: rehash it with `hash` to migrate). An unknown user (no hash)
        takes the same steps against the dummy hash: the number of bcrypt runs
        depends only on the text sent, never on whether the account exists.
        One pool job, so it holds one of `max_pending_hashes`, however many runs."""
        with self.admit() as admission:
            return await admission.check(password, password_hash)

    def _dummy(self) -> bytes:
        assert self._dummy_hash is not None, "PasswordHasher.start() was not awaited"
        return self._dummy_hash

    def _check_sync(self, password: str, password_hash: str | None) -> Match:
        stored = self._dummy() if password_hash is None else password_hash.encode()
        nfc = normalise(password)
        if bcrypt.checkpw(_bcrypt_input(nfc), stored):
            return Match.YES if password_hash is not None else Match.NO
        if nfc != password and bcrypt.checkpw(_bcrypt_input(password), stored):
            return Match.LEGACY if password_hash is not None else Match.NO
        return Match.NO

    def _hash_sync(self, password: str) -> str:
        salt = bcrypt.gensalt(self.settings.bcrypt_rounds)
        return bcrypt.hashpw(_bcrypt_input(password), salt).decode()

    def _check_and_hash_sync(
        self, password: str, user_inputs: Sequence[str], field: str
    ) -> str:
        check_strength(password, self.settings, user_inputs, field)
        return self._hash_sync(password)

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        """Run one job in the pool (the caller holds an Admission)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, func, *args)


class Admission:
    """One caller's place in the hashing queue (`PasswordHasher.admit`); its jobs run
    one after another, and the place is given back on exit."""

    def __init__(self, hasher: PasswordHasher, owners: tuple[str, ...]) -> None:
        self._hasher = hasher
        self._owners = owners
        self._open = True

    def __enter__(self) -> Admission:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._open:
            self._open = False
            self._hasher._release(self._owners)

    async def hash(self, password: str) -> str:
        """See `PasswordHasher.hash`."""
        hasher = self._hasher
        return await hasher._run(hasher._hash_sync, normalise(password))

    async def hash_new(
        self, password: str, user_inputs: Sequence[str], field: str
    ) -> str:
        """See `PasswordHasher.hash_new`."""
        hasher = self._hasher
        return await hasher._run(
            hasher._check_and_hash_sync, normalise(password), user_inputs, field
        )

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """See `PasswordHasher.verify`."""
        return await self.check(password, password_hash) is not Match.NO

    async def check(self, password: str, password_hash: str | None) -> Match:
        """See `PasswordHasher.check`."""
        hasher = self._hasher
        return await hasher._run(hasher._check_sync, password, password_hash)
