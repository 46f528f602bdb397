"""Signing keys: one signs, the others verify; a new key is published before it signs,
a retired one keeps verifying until every token it signed has expired.

Keys come from `tokens.secret` or `tokens.private_key_file` when configured (one key, no
rotation), otherwise from `signing_keys.json` in the data folder (mode 0600), generated on
first start and extended by `rotate`.

Rotation has two phases, so that no instance ever receives a token signed with a key it
does not know. A new key is written with `active_from` in the future: from then on every
instance that reads the file verifies with it and lists it in its JWKS; it becomes the
signer at `active_from`, the same instant for every instance whenever each read the file.
The delay (`publish_delay`) covers one reload by every running instance plus the JWKS
cache lifetime. With no server running (none holds the presence lock), `rotate-key`
switches at once: there is nobody to wait for.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import math
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt import PyJWK, PyJWKError
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from . import clock
from .keyfile import (
    KEY_FILE_NAME,
    KeyRecord,
    Presence,
    alone,
    check_not_writable_by_others,
    corrupt,
    locked,
    read_records,
    write_records,
)
from .keyfile import announce_presence as keyfile_announce
from .settings import Settings, SettingsError, TokenSettings

logger = logging.getLogger("auth.server")
_JWK_WRITERS = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}


class KeyRotationError(Exception):
    """Keys are configured by a setting, so there is nothing this server may rotate."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    signer: PyJWK
    verifier: PyJWK
    public_jwk: dict[str, Any] | None  # None for HS256: a secret is never published


class KeyRing:
    """The keys a process signs and verifies with, built from records at one instant.
    Which key signs is decided per call of `signer(now)`, from the records' times."""

    def __init__(self, records: list[KeyRecord], verify_window: int, now: int) -> None:
        live = [
            r
            for r in records
            if r.retired_at is None or r.retired_at + verify_window > now
        ]
        if not live:
            raise ValueError("no key left that may sign")
        self.records = records
        self.verifying: dict[str, SigningKey] = {r.kid: _signing_key(r) for r in live}
        ordered = sorted(enumerate(live), key=lambda item: (item[1].starts, item[0]))
        self._schedule = [(r.starts, self.verifying[r.kid]) for _, r in ordered]
        self._index = 0
        self._next_switch = -math.inf
        self.current = self._schedule[0][1]
        self.signer(now)

    def signer(self, now: float) -> SigningKey:
        """The key that signs at `now`: the last one whose `active_from` has come (the
        earliest one while none has, as under a clock behind the writer's)."""
        if now >= self._next_switch:
            started = [
                i for i, (starts, _) in enumerate(self._schedule) if starts <= now
            ]
            self._index = started[-1] if started else 0
            self.current = self._schedule[self._index][1]
            following = self._schedule[self._index + 1 :]
            self._next_switch = following[0][0] if following else math.inf
        return self.current

    @property
    def pending(self) -> tuple[SigningKey, int] | None:
        """The published key that signs next, and from when (as of the last `signer`)."""
        following = self._schedule[self._index + 1 :]
        return (following[0][1], following[0][0]) if following else None

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        keys = [k.public_jwk for k in self.verifying.values() if k.public_jwk]
        return {"keys": keys}


@functools.lru_cache(maxsize=64)
def _signing_key(record: KeyRecord) -> SigningKey:
    """Parsing a private key costs milliseconds: every process reloads the file every
    few seconds, so keys are parsed once per process (records are frozen, hashable)."""
    if record.algorithm == "HS256":
        jwk = PyJWK({"kty": "oct", "k": record.material, "kid": record.kid}, "HS256")
        return SigningKey(record.kid, "HS256", jwk, jwk, None)
    private = serialization.load_pem_private_key(
        record.material.encode(), password=None
    )
    writer = _JWK_WRITERS[record.algorithm]
    public = writer.to_jwk(private.public_key(), as_dict=True)
    public.update({"kid": record.kid, "alg": record.algorithm, "use": "sig"})
    private_jwk = writer.to_jwk(private, as_dict=True)
    private_jwk["kid"] = record.kid
    return SigningKey(
        record.kid,
        record.algorithm,
        PyJWK(private_jwk, record.algorithm),
        PyJWK(public, record.algorithm),
        public,
    )


def new_record(algorithm: str, now: int, active_from: int | None = None) -> KeyRecord:
    """A freshly generated key of `algorithm`, signing from `active_from` (default now)."""
    kid = secrets.token_urlsafe(12)
    starts = now if active_from is None else active_from
    if algorithm == "HS256":
        return KeyRecord(
            kid, algorithm, _b64(secrets.token_bytes(64)), now, None, starts
        )
    private = _generate_private_key(algorithm)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyRecord(kid, algorithm, pem.decode(), now, None, starts)


def _generate_private_key(algorithm: str) -> Any:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verify_window(tokens: TokenSettings) -> int:
    """How long a retired key keeps verifying: the longest any of its tokens can live."""
    return tokens.revocation_ttl


def publish_delay(tokens: TokenSettings) -> int:
    """Seconds between writing a key and signing with it: every running instance reloads
    the file within one `key_reload_interval` and every JWKS cache expires within
    `jwks_max_age`; one more interval is the margin for a slow reload, one second more
    for times kept in whole seconds."""
    return math.ceil(2 * tokens.key_reload_interval + tokens.jwks_max_age) + 1


def is_configured(tokens: TokenSettings) -> bool:
    return bool(tokens.secret or tokens.private_key_file)


def key_file(settings: Settings) -> Path:
    return settings.storage.data_dir / KEY_FILE_NAME


def load_key_ring(settings: Settings, now: int | None = None) -> KeyRing:
    """The key ring for these settings, generating the key file on first use (and a new
    key at once when `tokens.algorithm` changed). Blocking: call it through a thread from
    async code. Raises KeyFileError (a SettingsError) when the file cannot be used."""
    now = clock.epoch() if now is None else now
    tokens = settings.tokens
    if is_configured(tokens):
        return KeyRing([_configured_record(tokens)], verify_window(tokens), now)
    path = key_file(settings)
    records = _read_checked(path)
    if _needs_new_key(records, tokens, now):
        with locked(path):
            records = _read_checked(path)
            if _needs_new_key(records, tokens, now):
                records = _rotated(records, tokens, now, now)
                write_records(path, records)
    return _ring(path, records, tokens, now)


def _needs_new_key(records: list[KeyRecord], tokens: TokenSettings, now: int) -> bool:
    """No key yet, none left inside its window, or not of `tokens.algorithm`."""
    window = verify_window(tokens)
    if not any(r.retired_at is None or r.retired_at + window > now for r in records):
        return True
    ring_keys = [_signer_record(records, now), *_pending_records(records, now)]
    return any(r.algorithm != tokens.algorithm for r in ring_keys)


def rotate(
    settings: Settings,
    now: int | None = None,
    max_age: float | None = None,
    *,
    delay: int | None = None,
) -> KeyRing:
    """Publish a new key that signs after `delay` seconds and retire the signer then.

    `delay=None` (the `rotate-key` command): `publish_delay` while any server holds the
    presence lock on this key file, else 0 (nobody needs to learn the key first). With
    `max_age` (the schedule), only when the signer has signed for that long and no key is
    waiting already: several processes may ask at once. A key still waiting (published,
    never used) is replaced."""
    now = clock.epoch() if now is None else now
    tokens = settings.tokens
    if is_configured(tokens):
        raise KeyRotationError(
            "the signing key is set by tokens.secret or tokens.private_key_file: "
            "rotate it by changing that setting"
        )
    path = key_file(settings)
    with locked(path), alone(path.parent, probe=delay is None) as nobody_else:
        records = _read_checked(path)
        due = (
            not records
            or max_age is None
            or (
                not _pending_records(records, now)
                and _signer_record(records, now).starts + max_age <= now
            )
        )
        if due:
            wait = (
                delay
                if delay is not None
                else 0
                if nobody_else
                else publish_delay(tokens)
            )
            records = _rotated(records, tokens, now, now + wait)
            write_records(path, records)
    return _ring(path, records, tokens, now)


def _rotated(
    records: list[KeyRecord], tokens: TokenSettings, now: int, active_from: int
) -> list[KeyRecord]:
    """Drop keys past their window and any unused waiting key; the signer retires when
    the new key starts."""
    window = verify_window(tokens)
    signer = _signer_record(records, now) if records else None
    kept = []
    for record in records:
        if record.starts > now and record is not signer:
            continue  # published, never signed with: nobody holds its tokens
        if record is signer:
            record = replace(record, retired_at=active_from)
        elif record.retired_at is None:
            record = replace(record, retired_at=now)
        if record.retired_at + window > now:
            kept.append(record)
    return [*kept, new_record(tokens.algorithm, now, active_from)]


def _signer_record(records: list[KeyRecord], now: int) -> KeyRecord:
    """The record that signs at `now`, by the rule of `KeyRing.signer`."""
    ordered = sorted(enumerate(records), key=lambda item: (item[1].starts, item[0]))
    started = [record for _, record in ordered if record.starts <= now]
    return started[-1] if started else ordered[0][1]


def _pending_records(records: list[KeyRecord], now: int) -> list[KeyRecord]:
    signer = _signer_record(records, now)
    return [r for r in records if r.starts > now and r is not signer]


def _read_checked(path: Path) -> list[KeyRecord]:
    """The file's records, each key parsed once to prove it usable."""
    records = read_records(path)
    for n, record in enumerate(records, 1):
        try:
            _signing_key(record)
        except (ValueError, TypeError, KeyError, UnsupportedAlgorithm, PyJWKError):
            raise corrupt(path, f"key {n} cannot be loaded") from None
    return records


def _ring(
    path: Path, records: list[KeyRecord], tokens: TokenSettings, now: int
) -> KeyRing:
    try:
        return KeyRing(records, verify_window(tokens), now)
    except ValueError:  # rotate() on a file whose keys all expired meanwhile
        raise corrupt(path, "no key is left to sign with") from None


def _configured_record(tokens: TokenSettings) -> KeyRecord:
    if tokens.algorithm == "HS256":
        if not tokens.secret:
            raise SettingsError("tokens.private_key_file is for RS256, ES256 and EdDSA")
        secret = tokens.secret.encode()
        kid = "hs-" + _b64(hashlib.sha256(b"kid:" + secret).digest()[:9])
        return KeyRecord(kid, "HS256", _b64(secret), 0)
    if not tokens.private_key_file:
        raise SettingsError(
            f"tokens.secret is for HS256; {tokens.algorithm} needs a key file"
        )
    pem = _read_pem(Path(tokens.private_key_file))
    kid = "pem-" + _b64(hashlib.sha256(pem.encode()).digest()[:9])
    record = KeyRecord(kid, tokens.algorithm, pem, 0)
    try:
        _signing_key(record)
    except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
        raise SettingsError(
            f"tokens.private_key_file does not hold a {tokens.algorithm} private key: {exc}"
        ) from None
    return record


def _read_pem(path: Path) -> str:
    try:
        check_not_writable_by_others(path, os.stat(path), "tokens.private_key_file")
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"cannot read tokens.private_key_file {path}: {exc}"
        ) from None


def announce_presence(settings: Settings) -> Presence:
    """Held by a serving process for its life (and inherited by its workers): while any
    is held, `rotate-key` publishes new keys ahead of their use."""
    if is_configured(settings.tokens):
        return Presence(None)
    return keyfile_announce(settings.storage.data_dir)
