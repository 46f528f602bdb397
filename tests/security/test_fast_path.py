"""The fast path for HS256 tokens (server/jws.py): a token whose header segment is byte
for byte the one this server writes is verified without PyJWT. Every forgery that could
reach it is refused exactly like PyJWT's path refuses it, and a token that is not exactly
ours still goes through PyJWT (other algorithms, headers, unknown keys)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from server import clock, jws, keys, signing_keys
from server.settings import TokenSettings
from server.signing_keys import KeyRing
from server.tokens import (
    AccessClaims,
    AccessTokens,
    TokenExpired,
    TokenInvalid,
    UnknownKeyId,
)
from storage import User
from tests.conftest import Api, MakeApi, expect_error
from tests.security.helpers import (
    access_claims,
    b64url,
    b64url_json,
    compose,
    expect_invalid,
    server_signed,
    token_parts,
)

memory_only = pytest.mark.parametrize("backend", ["memory"])
EXPIRED = "Unauthorized! Access Token was expired!"
USER = User("u-1", "alice", "alice@example.com", "hash", ("user",), 0)


def our_header(api: Api) -> str:
    return jws.header_segment(api.app[keys.AUTH].access_tokens.ring.current)


def secret_of(api: Api) -> bytes:
    return api.app[keys.AUTH].access_tokens.ring.current.verifier.key


def fast_signed(
    api: Api, payload: dict[str, Any] | str, *, digest: str = "sha256"
) -> str:
    """`payload` (a dict, or a payload segment as is) under this server's own header
    segment, signed with its secret: the tokens the fast path judges."""
    segment = payload if isinstance(payload, str) else b64url_json(payload)
    signing_input = f"{our_header(api)}.{segment}"
    mac = hmac.new(secret_of(api), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(mac)}"


async def expect_accepted(api: Api, token: str) -> None:
    response = await api.get("/api/test/user", token)
    assert (response.status, await response.text()) == (200, "User Content."), token


def non_canonical(segment: str) -> str:
    """The same bytes to a lenient decoder: the last character with a non-zero bit
    that the encoding leaves unused (43 characters carry 256 bits + 2 spare ones)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(segment[-1])
    assert last % 4 == 0  # canonical: the two spare bits are zero
    return segment[:-1] + alphabet[last + 1]


@memory_only
async def test_issued_tokens_carry_the_precomputed_header(api: Api) -> None:
    token = (await api.user())["accessToken"]
    header = token.split(".")[0]
    assert header == our_header(api)
    kid = api.app[keys.AUTH].access_tokens.ring.current.kid
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {
        "alg": "HS256",
        "kid": kid,
        "typ": "JWT",
    }
    await expect_accepted(api, token)
    await expect_accepted(api, fast_signed(api, access_claims(api.app)))


@memory_only
async def test_alg_none_under_our_kid_is_refused(api: Api) -> None:
    claims = access_claims(api.app)
    kid = api.app[keys.AUTH].access_tokens.ring.current.kid
    for alg in ("none", "None"):
        unsigned = compose({"alg": alg, "kid": kid, "typ": "JWT"}, claims)
        await expect_invalid(api, unsigned)
    # Our exact header, no signature at all, or an empty one.
    await expect_invalid(api, f"{our_header(api)}.{b64url_json(claims)}.")
    await expect_invalid(api, f"{our_header(api)}.{b64url_json(claims)}")


@memory_only
@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS256", "ES256", "EdDSA"])
async def test_another_alg_under_our_kid_is_refused(api: Api, alg: str) -> None:
    """The header names another algorithm with this server's kid; HMACs made with the
    server's own secret (the strongest forgery) are refused all the same."""
    claims = access_claims(api.app)
    kid = api.app[keys.AUTH].access_tokens.ring.current.kid
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}".encode()
    for digest in ("sha256", "sha384", "sha512"):
        mac = hmac.new(secret_of(api), signing_input, digest).digest()
        await expect_invalid(api, compose(header, claims, mac))
    # Our header with a longer HMAC of the same secret: not HS256's 32 bytes.
    await expect_invalid(api, fast_signed(api, claims, digest="sha512"))


@memory_only
async def test_tampered_payload_and_signature_are_refused(api: Api) -> None:
    token = (await api.user("mallory"))["accessToken"]
    await expect_accepted(api, token)
    header, payload, signature = token.split(".")
    _, claims, _ = token_parts(token)
    for changes in ({"roles": ["user", "admin"]}, {"sub": "victim"}, {"exp": 2**40}):
        forged = f"{header}.{b64url_json({**claims, **changes})}.{signature}"
        await expect_invalid(api, forged, "/api/test/admin")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in (
        flipped,
        signature[:-1],
        signature + "A",
        "",
        b64url(b"\0" * 32),
        b64url(bytes(32 - 1)),
    ):
        await expect_invalid(api, f"{header}.{payload}.{bad}")
    await expect_accepted(api, token)


@memory_only
async def test_non_canonical_and_padded_base64_is_refused(api: Api) -> None:
    claims = access_claims(api.app)
    token = fast_signed(api, claims)
    await expect_accepted(api, token)
    header, payload, signature = token.split(".")
    padded_payload = payload + "=" * (-len(payload) % 4 or 4)
    bad_tokens = [
        f"{header}.{payload}.{non_canonical(signature)}",
        f"{header}.{payload}.{signature}=",
        f"{header}.{payload}.{signature}==",
        f"{header}.{payload}.{signature[:20]}+{signature[21:]}",  # standard alphabet
        f"{header}.{payload}.{signature[:20]}/{signature[21:]}",
        f"{header}.{payload}.{signature[:20]} {signature[20:]}",
        f"{header}.{payload}.{signature[:20]}.{signature[20:]}",
        fast_signed(api, padded_payload),  # signed, but padded
        fast_signed(api, payload + "A"),  # an impossible length (4n + 1)
        fast_signed(api, payload[:10] + "*" + payload[10:]),  # skipped by lenient
        fast_signed(api, payload[:10] + "." + payload[10:]),  # a fourth segment
    ]
    if len(payload) % 4:  # a payload segment with spare bits: set one
        bad_tokens.append(fast_signed(api, _spare_bit_set(payload)))
    for bad in bad_tokens:
        await expect_invalid(api, bad)
    # What no HTTP client sends, straight to the verifier.
    tokens = api.app[keys.AUTH].access_tokens
    for bad in (
        f"{header}.{payload}.{signature[:20]}\n{signature[20:]}",
        f"{header}.{payload}.{signature[:20]}é{signature[21:]}",
        f"{header}.{payload}é.{signature}",
    ):
        with pytest.raises(TokenInvalid):
            tokens.verify(bad)


def _spare_bit_set(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = {2: 4, 3: 2}[len(segment) % 4]  # spare bits in the last character
    last = alphabet.index(segment[-1])
    assert last % (1 << spare) == 0
    return segment[:-1] + alphabet[last + 1]


def test_strict_base64url() -> None:
    assert jws.b64url_decode("") == b""
    assert jws.b64url_decode("AQ") == b"\x01"
    assert jws.b64url_decode("-_8") == b"\xfb\xff"
    for bad in ("AR", "AQ=", "AQ==", "+_8", "-/8", "A", "AQ A", "AQ\n", "é", "A=Q"):
        with pytest.raises(jws.JwsInvalid):
            jws.b64url_decode(bad)


@memory_only
async def test_payloads_that_are_not_a_json_object_are_refused(api: Api) -> None:
    for raw in (b"[]", b'"access"', b"42", b"null", b"{", b"\xff\xfe", b"", b"{}x"):
        await expect_invalid(api, fast_signed(api, b64url(raw)))
    await expect_invalid(api, fast_signed(api, b64url(b"[" * 2000 + b"]" * 2000)))


@memory_only
async def test_a_huge_token_is_refused_before_anything(api: Api) -> None:
    claims = access_claims(api.app, padding="x" * 4000)
    token = fast_signed(api, claims)
    assert len(token) > 4096
    await expect_invalid(api, token)
    fits = fast_signed(api, access_claims(api.app, padding="x" * 2000))
    assert len(fits) < 4096
    await expect_accepted(api, fits)  # an unknown claim is ignored, as by PyJWT


@memory_only
async def test_a_header_with_more_members_takes_pyjwt_and_is_checked_all_the_same(
    api: Api,
) -> None:
    """Not our header byte for byte: PyJWT's path, with its own verdict."""
    claims = access_claims(api.app)
    extra = server_signed(api.app, claims, x5u="https://attacker.example/k")
    assert extra.split(".")[0] != our_header(api)
    await expect_accepted(api, extra)
    header, _, signature = extra.split(".")
    forged = f"{header}.{b64url_json({**claims, 'roles': ['admin']})}.{signature}"
    await expect_invalid(api, forged, "/api/test/admin")
    await expect_invalid(api, server_signed(api.app, claims, crit=["exp"]))
    reordered = server_signed(api.app, claims)  # alg, typ, kid: another segment
    assert reordered.split(".")[0] != our_header(api)
    await expect_accepted(api, reordered)


@memory_only
async def test_expired_wrong_issuer_and_wrong_type_on_the_fast_path(api: Api) -> None:
    now = int(time.time())
    expired = fast_signed(api, access_claims(api.app, iat=now - 600, exp=now - 60))
    await expect_error(
        await api.get("/api/test/user", expired), 401, EXPIRED, "token_expired"
    )
    for changes in (
        {"iss": "someone-else"},
        {"iss": ["auth-server"]},
        {"iss": None},
        {"aud": "auth-server"},  # no audience is set: none is accepted
        {"typ": "refresh"},
        {"sub": 7},
        {"jti": ["j"]},
        {"roles": "admin"},
        {"iat": now + 3600, "exp": now + 3660},
        {"nbf": now + 3600},
        {"exp": float(now + 60)},
    ):
        await expect_invalid(api, fast_signed(api, access_claims(api.app, **changes)))
    for claim in ("exp", "iat", "sub", "sid", "jti", "iss", "typ", "roles"):
        missing = access_claims(api.app, **{claim: None})
        await expect_invalid(api, fast_signed(api, missing))
        await expect_invalid(
            api, fast_signed(api, {**access_claims(api.app), claim: None})
        )


@memory_only
async def test_the_audience_on_the_fast_path(make_api: MakeApi) -> None:
    api = await make_api(tokens={"audience": "orders-api"})
    issued = (await api.user())["accessToken"]
    assert issued.split(".")[0] == our_header(api)
    await expect_accepted(api, issued)
    await expect_accepted(
        api, fast_signed(api, access_claims(api.app, aud=["x", "orders-api"]))
    )
    for audience in ("other-api", ["other-api"], "", [], None, 42, ["orders-api", 1]):
        token = fast_signed(api, access_claims(api.app, aud=audience))
        await expect_invalid(api, token)


@memory_only
async def test_a_lifetime_longer_than_access_ttl_is_refused(make_api: MakeApi) -> None:
    """A token minted under a longer `access_ttl` (an old config, a leaked key) is not
    honoured past this server's policy: on both paths."""
    api = await make_api(tokens={"access_ttl": 300})
    now = int(time.time())
    exact = access_claims(api.app, iat=now, exp=now + 300)
    longer = access_claims(api.app, iat=now, exp=now + 301)
    await expect_accepted(api, fast_signed(api, exact))
    await expect_accepted(api, server_signed(api.app, exact))
    await expect_invalid(api, fast_signed(api, longer))
    await expect_invalid(api, server_signed(api.app, longer))
    old = access_claims(api.app, iat=now - 3000, exp=now + 600)  # a day-long token
    await expect_invalid(api, fast_signed(api, old))


@memory_only
async def test_an_rs256_server_takes_no_fast_path(make_api: MakeApi) -> None:
    api = await make_api(tokens={"algorithm": "RS256", "secret": ""})
    tokens = api.app[keys.AUTH].access_tokens
    assert tokens._hs256 == {}
    issued = (await api.user())["accessToken"]
    assert token_parts(issued)[0]["alg"] == "RS256"
    await expect_accepted(api, issued)


# The AccessTokens object itself: both paths, the cache and the key ring.


def _ring(*records: Any, now: int) -> KeyRing:
    return KeyRing(list(records), 900, now)


def _tokens(ring: KeyRing, **settings: Any) -> AccessTokens:
    return AccessTokens(TokenSettings(**settings), ring)


def test_both_paths_give_identical_claims() -> None:
    now = clock.epoch()
    ring = _ring(signing_keys.new_record("HS256", now), now=now)
    tokens = _tokens(ring, audience="orders-api")
    token = tokens.issue(USER, "session-1")
    header = token.split(".")[0]
    assert tokens._hs256 == {header: ring.current.verifier.key}
    fast = tokens._hs256_payload(token, len(header), ring.current.verifier.key)
    slow = tokens._verified_payload(token)
    assert fast == slow
    assert fast["aud"] == "orders-api"
    claims = tokens.verify(token)
    assert claims == AccessClaims(
        "u-1", ("user",), "session-1", fast["jti"], fast["exp"]
    )


def test_a_token_of_a_removed_key_is_not_served_from_the_cache() -> None:
    now = clock.epoch()
    old, new = (
        signing_keys.new_record("HS256", now),
        signing_keys.new_record("HS256", now),
    )
    tokens = _tokens(_ring(old, now=now))
    token = tokens.issue(USER, "session-1")
    assert tokens.verify(token).session_id == "session-1"
    assert token in tokens._cache
    tokens.ring = _ring(old, new, now=now)  # a key added: the old one still verifies
    assert tokens.verify(token).session_id == "session-1"
    tokens.ring = _ring(new, now=now)  # the old key left the ring
    assert tokens._cache == {}
    with pytest.raises(UnknownKeyId):
        tokens.verify(token)
    assert token.split(".")[0] not in tokens._hs256


def test_a_reload_with_the_same_keys_keeps_the_cache(monkeypatch: Any) -> None:
    now = clock.epoch()
    record = signing_keys.new_record("HS256", now)
    tokens = _tokens(_ring(record, now=now))
    token = tokens.issue(USER, "session-1")
    tokens.verify(token)
    tokens.ring = _ring(record, now=now)  # what the key watcher does every reload

    def no_decoding(token: str) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(tokens, "_decode", no_decoding)
    assert tokens.verify(token).session_id == "session-1"


def test_a_key_whose_material_changed_under_the_same_kid_clears_the_cache() -> None:
    now = clock.epoch()
    record = signing_keys.new_record("HS256", now)
    tokens = _tokens(_ring(record, now=now))
    token = tokens.issue(USER, "session-1")
    tokens.verify(token)
    other = signing_keys.new_record("HS256", now)
    swapped = type(record)(record.kid, "HS256", other.material, now, None, now)
    tokens.ring = _ring(swapped, now=now)
    with pytest.raises(TokenInvalid):
        tokens.verify(token)


def test_an_expired_token_is_not_cached() -> None:
    now = clock.epoch()
    tokens = _tokens(
        _ring(signing_keys.new_record("HS256", now), now=now), access_ttl=60
    )
    token = tokens.issue(USER, "session-1")
    clock.advance(60 + 6 + 1)  # past exp and its leeway (a tenth of 60 s)
    with pytest.raises(TokenExpired):
        tokens.verify(token)
    assert token not in tokens._cache


def test_the_cache_evicts_the_oldest_token() -> None:
    now = clock.epoch()
    tokens = _tokens(
        _ring(signing_keys.new_record("HS256", now), now=now), verify_cache_size=2
    )
    issued = [tokens.issue(USER, f"session-{n}") for n in range(3)]
    for token in issued:
        tokens.verify(token)
    assert list(tokens._cache) == issued[1:]


def test_pyjwt_and_the_precomputed_header_agree() -> None:
    """The header segment is asked of PyJWT itself: `issue` and the fast path cannot
    drift apart whatever PyJWT's version writes."""
    now = clock.epoch()
    ring = _ring(signing_keys.new_record("HS256", now), now=now)
    key = ring.current
    token = jwt.encode(
        {"a": 1}, key.signer, algorithm="HS256", headers={"kid": key.kid}
    )
    assert token.split(".")[0] == jws.header_segment(key)
    mac = hmac.new(key.verifier.key, token.rpartition(".")[0].encode(), hashlib.sha256)
    assert token.split(".")[2] == b64url(mac.digest())


def test_settings_pin_the_fast_path_to_hs256() -> None:
    """An HS256 key left in the ring while the server is pinned to RS256 verifies
    nothing: its tokens go to PyJWT, which refuses HS256."""
    now = clock.epoch()
    hs = signing_keys.new_record("HS256", now)
    rs = signing_keys.new_record("RS256", now, active_from=now + 3600)
    ring = _ring(hs, rs, now=now)
    hs_tokens = _tokens(ring)
    token = hs_tokens.issue(USER, "session-1")
    assert hs_tokens.verify(token).session_id == "session-1"
    pinned = AccessTokens(TokenSettings(algorithm="RS256"), ring)
    assert pinned._hs256 == {}
    with pytest.raises(TokenInvalid):
        pinned.verify(token)
