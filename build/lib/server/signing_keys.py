"""Signing keys: the current one signs, retired ones keep verifying until every token
they signed has expired, asymmetric public keys are published as a JWKS.

Keys come from `tokens.secret` or `tokens.private_key_file` when configured (one key, no
rotation), otherwise from `signing_keys.json` in the data folder (mode 0600), generated on
first start and extended by `rotate`.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from . import clock
from .settings import Settings, SettingsError, TokenSettings

KEY_FILE_NAME = "signing_keys.json"
_JWK_WRITERS = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}


class KeyRotationError(Exception):
    """Keys are configured by a setting, so there is nothing this server may rotate."""


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: HS256 keeps `secret`, the others a PKCS#8 PEM."""

    kid: str
    algorithm: str
    material: str  # base64url secret (HS256) or private PEM
    created_at: int
    retired_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    signer: PyJWK
    verifier: PyJWK
    public_jwk: dict[str, Any] | None  # None for HS256: a secret is never published


class KeyRing:
    """The keys a process signs and verifies with, built from records at one instant."""

    def __init__(self, records: list[KeyRecord], verify_window: int, now: int) -> None:
        live = [
            r
            for r in records
            if r.retired_at is None or r.retired_at + verify_window > now
        ]
        self.records = records
        self.current = _signing_key(next(r for r in records if r.retired_at is None))
        self.verifying: dict[str, SigningKey] = {r.kid: _signing_key(r) for r in live}

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        keys = [k.public_jwk for k in self.verifying.values() if k.public_jwk]
        return {"keys": keys}


def _signing_key(record: KeyRecord) -> SigningKey:
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


def new_record(algorithm: str, now: int) -> KeyRecord:
    """A freshly generated key of `algorithm`."""
    kid = secrets.token_urlsafe(12)
    if algorithm == "HS256":
        return KeyRecord(kid, algorithm, _b64(secrets.token_bytes(64)), now)
    private = _generate_private_key(algorithm)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyRecord(kid, algorithm, pem.decode(), now)


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


def is_configured(tokens: TokenSettings) -> bool:
    return bool(tokens.secret or tokens.private_key_file)


def key_file(settings: Settings) -> Path:
    return settings.storage.data_dir / KEY_FILE_NAME


def load_key_ring(settings: Settings, now: int | None = None) -> KeyRing:
    """The key ring for these settings, generating the key file on first use. Blocking:
    call it through a thread from async code."""
    now = clock.epoch() if now is None else now
    tokens = settings.tokens
    if is_configured(tokens):
        return KeyRing([_configured_record(tokens)], verify_window(tokens), now)
    path = key_file(settings)
    with _locked(path):
        records = _read_records(path)
        if not records or _current(records).algorithm != tokens.algorithm:
            records = _rotated(records, tokens, now)
            _write_records(path, records)
    return KeyRing(records, verify_window(tokens), now)


def rotate(
    settings: Settings, now: int | None = None, max_age: float | None = None
) -> KeyRing:
    """Make a new key current, retiring the previous one. With `max_age` (seconds), only
    if the current key is at least that old: several processes may ask at once."""
    now = clock.epoch() if now is None else now
    tokens = settings.tokens
    if is_configured(tokens):
        raise KeyRotationError(
            "the signing key is set by tokens.secret or tokens.private_key_file: "
            "rotate it by changing that setting"
        )
    path = key_file(settings)
    with _locked(path):
        records = _read_records(path)
        if (
            not records
            or max_age is None
            or _current(records).created_at + max_age <= now
        ):
            records = _rotated(records, tokens, now)
            _write_records(path, records)
    return KeyRing(records, verify_window(tokens), now)


def _rotated(
    records: list[KeyRecord], tokens: TokenSettings, now: int
) -> list[KeyRecord]:
    window = verify_window(tokens)
    kept = [
        r if r.retired_at is not None else replace(r, retired_at=now)
        for r in records
        if r.retired_at is None or r.retired_at + window > now
    ]
    return [*kept, new_record(tokens.algorithm, now)]


def _current(records: list[KeyRecord]) -> KeyRecord:
    return next(r for r in records if r.retired_at is None)


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
    except (ValueError, TypeError, KeyError) as exc:
        raise SettingsError(
            f"tokens.private_key_file does not hold a {tokens.algorithm} private key: {exc}"
        ) from None
    return record


def _read_pem(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"cannot read tokens.private_key_file {path}: {exc}"
        ) from None


def _read_records(path: Path) -> list[KeyRecord]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read the signing keys in {path}: {exc}") from None
    return [KeyRecord(**item) for item in data["keys"]]


def _write_records(path: Path, records: list[KeyRecord]) -> None:
    """Write atomically (temporary file, then rename), readable by the owner only."""
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"keys": [r.to_json() for r in records]}, handle, indent=1)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise key-file changes between processes (workers, the CLI)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
