"""The fast path for this server's own HS256 tokens: a JWS whose header segment is, byte
for byte, the one this server writes for a key it verifies with.

Such a header names HS256 and that key's `kid` and nothing else, so it needs no parsing:
the segment picks the key, the HMAC over `header.payload` is compared in constant time
with the strictly decoded signature, and only then is the payload decoded. Any other
header (another algorithm, member order, extra members, an unknown `kid`) is not ours to
judge here and goes through PyJWT unchanged. PyJWT prepares keys and parses the header on
every call (about 60 us a token); this path costs a few.
"""

from __future__ import annotations

import binascii
import hmac
import json
from typing import Any

import jwt

from .signing_keys import KeyRing, SigningKey

HS256 = "HS256"
_TO_STANDARD = str.maketrans("-_", "+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_PADDING = ("", "===", "==", "=")  # by length % 4; 1 is impossible and fails to decode


class JwsInvalid(Exception):
    """Malformed, or the signature does not match."""


def header_segment(key: SigningKey) -> str:
    """The header segment of every token `key` signs: the one PyJWT writes for
    `AccessTokens.issue` (asked of PyJWT itself, so both always agree)."""
    token = jwt.encode(
        {}, key.signer, algorithm=key.algorithm, headers={"kid": key.kid}
    )
    return token.partition(".")[0]


def hs256_keys(ring: KeyRing, pinned: str) -> dict[str, bytes]:
    """Header segment -> HMAC secret, for each HS256 key of `ring` when the algorithm is
    pinned to HS256 (under another pin, HS256 tokens are refused by PyJWT's path)."""
    if pinned != HS256:
        return {}
    return {
        header_segment(key): key.verifier.key
        for key in ring.verifying.values()
        if key.algorithm == HS256
    }


def b64url_decode(segment: str) -> bytes:
    """Base64url without padding, canonical only: any other character, padding, an
    impossible length or non-zero trailing bits raise JwsInvalid. (binascii directly:
    the base64 module's wrappers cost more than the decoding.)"""
    try:
        raw = binascii.a2b_base64(
            segment.translate(_TO_STANDARD) + _PADDING[len(segment) % 4]
        )
    except (ValueError, binascii.Error):
        raise JwsInvalid from None
    # The lenient decoder skips stray characters and ignores trailing bits (and reads
    # "+" and "/" as "-" and "_"): only the one canonical spelling of `raw`
    # re-encodes to the same text.
    encoded = binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE)
    if encoded.rstrip(b"=") != segment.encode():
        raise JwsInvalid
    return raw


def hs256_payload(token: str, header_length: int, secret: bytes) -> dict[str, Any]:
    """The payload of `token`, whose first `header_length` characters are a known
    header segment of `secret`'s key: signature first, then the JSON object."""
    if not token.isascii():
        raise JwsInvalid
    signing_input, dot, signature = token.rpartition(".")
    payload_segment = signing_input[header_length + 1 :]
    if (
        not dot
        or signing_input[header_length : header_length + 1] != "."
        or "." in payload_segment
    ):
        raise JwsInvalid
    mac = hmac.digest(secret, signing_input.encode(), "sha256")
    if not hmac.compare_digest(mac, b64url_decode(signature)):
        raise JwsInvalid
    try:
        payload = json.loads(b64url_decode(payload_segment).decode())  # UTF-8 only
    except (ValueError, RecursionError):
        raise JwsInvalid from None
    if not isinstance(payload, dict):
        raise JwsInvalid
    return payload
