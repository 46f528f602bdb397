"""Access tokens (JWTs) and refresh tokens (opaque random strings, stored by hash).

Decoding is strict: the algorithm is pinned, every claim is required and checked, and no
pyjwt exception leaves this module: callers see TokenExpired or TokenInvalid only.
A token bearing the exact HS256 header this server writes is verified by server/jws.py
(a few microseconds), any other by PyJWT; both paths make the same claim checks.
Verified tokens are cached (claims kept; expiry re-checked on every hit) because
re-verifying a signature per request costs more than the rest of the request; the cache
is emptied whenever the set of verifying keys changes, so a key that left the ring
validates nothing more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

from storage import User

from . import clock, jws
from .settings import TokenSettings
from .signing_keys import KeyRing

REQUIRED_CLAIMS = ["exp", "iat", "sub", "sid", "jti", "iss", "typ", "roles"]
ACCESS_TYPE = "access"
MAX_TOKEN_LENGTH = 4096


class TokenError(Exception):
    """Base class: the access token is not acceptable."""


class TokenExpired(TokenError):
    """The token was valid but its `exp` (plus leeway) has passed."""


class TokenInvalid(TokenError):
    """Malformed, forged, of another type, issuer, audience or key: anything but expired."""


class UnknownKeyId(TokenInvalid):
    """The token names a `kid` this process does not know (yet): after
    `AccessTokens.verify_reloaded` it is either verified or refused for good."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    roles: tuple[str, ...]
    session_id: str
    token_id: str
    expires_at: int


class AccessTokens:
    """Issues and verifies access tokens with the current key ring."""

    def __init__(
        self,
        settings: TokenSettings,
        ring: KeyRing | None = None,
        time_source: Callable[[], float] = clock.now,
    ) -> None:
        self.settings = settings
        self._clock = time_source
        # Oldest first. Not a dict: evicting a dict's first key over and over makes
        # `next(iter(...))` step over every slot freed before it (~8 us a token).
        self._cache: OrderedDict[str, AccessClaims] = OrderedDict()
        self._leeway = settings.expiry_leeway
        self._ring: KeyRing | None = None
        self._ring_identity: frozenset[tuple[str, str, str]] = frozenset()
        # Header segment -> HMAC secret: the tokens server/jws.py verifies.
        self._hs256: dict[str, bytes] = {}
        if ring is not None:
            self.ring = ring
        # Set by the key watcher: rereads the key file (throttled) for an unknown kid.
        self.reload_hook: Callable[[], Awaitable[None]] | None = None

    @property
    def ring(self) -> KeyRing:
        """The keys in use; loaded when the server starts."""
        assert self._ring is not None, "signing keys are not loaded yet"
        return self._ring

    @ring.setter
    def ring(self, ring: KeyRing) -> None:
        """The key watcher sets a new ring every reload: the cache and the fast path's
        keys change only when the verifying keys do (a key added, or removed)."""
        identity = frozenset(
            (r.kid, r.algorithm, r.material)
            for r in ring.records
            if r.kid in ring.verifying
        )
        if identity != self._ring_identity:
            self._cache.clear()
            self._hs256 = jws.hs256_keys(ring, self.settings.algorithm)
            self._ring_identity = identity
        self._ring = ring

    def issue(self, user: User, session_id: str) -> str:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "sub": user.id,
            "roles": list(user.roles),
            "sid": session_id,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + self.settings.access_ttl,
            "iss": self.settings.issuer,
            "typ": ACCESS_TYPE,
        }
        if self.settings.audience:
            claims["aud"] = self.settings.audience
        key = self.ring.signer(now)
        return jwt.encode(
            claims, key.signer, algorithm=key.algorithm, headers={"kid": key.kid}
        )

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid token; raises TokenExpired or TokenInvalid."""
        now = self._clock()
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token)
            if claims.expires_at + self._leeway <= now:
                raise TokenExpired
            self._remember(token, claims)
        elif claims.expires_at + self._leeway <= now:
            del self._cache[token]
            raise TokenExpired
        return claims

    async def verify_reloaded(self, token: str) -> AccessClaims:
        """`verify` once the key file has been read again: for a token that `verify`
        refused with UnknownKeyId (signed by a key published since this process's last
        reload). The reload is throttled and shared; without a watcher, none happens."""
        if self.reload_hook is not None:
            await self.reload_hook()
        return self.verify(token)

    async def verify_async(self, token: str) -> AccessClaims:
        """`verify`, with the reload for an unknown `kid` included."""
        try:
            return self.verify(token)
        except UnknownKeyId:
            return await self.verify_reloaded(token)

    def _remember(self, token: str, claims: AccessClaims) -> None:
        cache = self._cache
        if len(cache) >= self.settings.verify_cache_size:
            cache.popitem(last=False)
        cache[token] = claims

    def _decode(self, token: str) -> AccessClaims:
        if len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid
        dot = token.find(".")
        secret = self._hs256.get(token[:dot]) if dot > 0 else None
        try:
            if secret is not None:
                payload = self._hs256_payload(token, dot, secret)
            else:
                payload = self._verified_payload(token)
        except (jwt.PyJWTError, jws.JwsInvalid, ValueError, TypeError, KeyError):
            raise TokenInvalid from None
        return _claims(payload, self._clock(), self.settings)

    def _hs256_payload(
        self, token: str, header_length: int, secret: bytes
    ) -> dict[str, Any]:
        """The fast path (server/jws.py), then the checks PyJWT makes in the other one:
        required claims present and not null, `iss`, `aud`, `sub` and `jti` strings."""
        payload = jws.hs256_payload(token, header_length, secret)
        settings = self.settings
        if None in map(payload.get, REQUIRED_CLAIMS):  # JSON values never == None
            raise TokenInvalid
        iss = payload["iss"]
        if not isinstance(iss, str) or iss != settings.issuer:
            raise TokenInvalid
        if settings.audience and not _audience_matches(
            payload.get("aud"), settings.audience
        ):
            raise TokenInvalid
        if not isinstance(payload["sub"], str) or not isinstance(payload["jti"], str):
            raise TokenInvalid
        return payload

    def _verified_payload(self, token: str) -> dict[str, Any]:
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenInvalid
        key = self.ring.verifying.get(kid)
        if key is None:
            raise UnknownKeyId
        settings = self.settings
        return jwt.decode(
            token,
            key.verifier,
            algorithms=[settings.algorithm],
            issuer=settings.issuer,
            audience=settings.audience or None,
            options={
                "require": REQUIRED_CLAIMS,
                "verify_aud": bool(settings.audience),
                # Times are checked by `_claims` and `verify` on the server's clock, the
                # one that stamped them: pyjwt would read the wall clock.
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )


def _audience_matches(aud: object, audience: str) -> bool:
    """PyJWT's `aud` rule (not strict): a non-empty string or list of strings that
    holds `audience`."""
    if not aud:
        return False
    claims = [aud] if isinstance(aud, str) else aud
    if not isinstance(claims, list) or not all(isinstance(c, str) for c in claims):
        return False
    return audience in claims


def _claims(
    payload: dict[str, Any], now: float, settings: TokenSettings
) -> AccessClaims:
    """Check what pyjwt is not asked to: the type, claim types, `iat` and `nbf` not in
    the future (the leeway aside), a lifetime (`exp - iat`) no longer than
    `tokens.access_ttl` (the server's own tokens have exactly that: a longer one was
    minted under another policy, or by someone else holding the key), and no `aud` on a
    server that sets none. `exp` is checked by `verify`, on every use of a cached token
    too."""
    roles, exp, iat = payload["roles"], payload["exp"], payload["iat"]
    nbf = payload.get("nbf", iat)
    strings = [payload["sub"], payload["sid"], payload["jti"]]
    valid = (
        payload["typ"] == ACCESS_TYPE
        and all(isinstance(value, str) and value for value in strings)
        and isinstance(roles, list)
        and all(isinstance(role, str) for role in roles)
        and isinstance(exp, int)
        and isinstance(iat, int)
        and iat <= now + settings.leeway
        and exp - iat <= settings.access_ttl
        and _is_number(nbf)
        and nbf <= now + settings.leeway
        and (bool(settings.audience) or "aud" not in payload)
    )
    if not valid:
        raise TokenInvalid
    return AccessClaims(
        payload["sub"], tuple(roles), payload["sid"], payload["jti"], exp
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RefreshTokens:
    """Mints refresh tokens and derives successors deterministically.

    The successor is an HMAC of the presented token under a key shared through storage,
    so every process derives the same one and only hashes need to be stored.
    """

    def __init__(self, successor_key: bytes | None = None) -> None:
        self.key = successor_key  # shared through storage; set when the server starts

    @staticmethod
    def mint() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def successor(self, token: str) -> str:
        assert self.key is not None, "the successor key is not loaded yet"
        mac = hmac.new(self.key, token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
