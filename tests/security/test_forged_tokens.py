"""Forged, tampered and mis-keyed access tokens: each one is 401 `token_invalid`, and each
forgery is checked next to its honest twin, which the server accepts."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from server import clock, keys, signing_keys
from server.settings import Settings, SettingsError, TokenSettings, load_settings
from tests.conftest import TEST_SECRET, Api, MakeApi, expect_error
from tests.security.helpers import (
    REQUIRED_ADMIN,
    access_claims,
    b64url_json,
    compose,
    expect_invalid,
    server_signed,
    signed_with,
    signing_input,
    token_parts,
)

memory_only = pytest.mark.parametrize("backend", ["memory"])
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
GENERATED = {"secret": ""}  # no configured key: keys are generated in the data folder


async def expect_accepted(api: Api, token: str) -> None:
    response = await api.get("/api/test/user", token)
    assert (response.status, await response.text()) == (200, "User Content."), token


@memory_only
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(api: Api, alg: str) -> None:
    claims = access_claims(api.app)
    await expect_accepted(api, server_signed(api.app, claims))
    kid = api.app[keys.AUTH].access_tokens.ring.current.kid
    unsigned = compose({"alg": alg, "typ": "JWT", "kid": kid}, claims)
    await expect_invalid(api, unsigned)
    # An honest signature kept under a header that now claims "none".
    honest = server_signed(api.app, claims).rsplit(".", 1)[1]
    await expect_invalid(api, unsigned + honest)


@memory_only
async def test_hs256_signed_with_the_rsa_public_key_is_refused(
    make_api: MakeApi,
) -> None:
    """The classic confusion: an RS256 server must not verify HMACs keyed with its own
    public key, in whatever encoding the attacker found it."""
    api = await make_api(tokens={"algorithm": "RS256", **GENERATED})
    current = api.app[keys.AUTH].access_tokens.ring.current
    claims = access_claims(api.app, roles=["user", "admin"])
    await expect_accepted(api, server_signed(api.app, claims))
    public = current.verifier.key
    jwks_text = await (await api.get("/.well-known/jwks.json")).text()
    encodings = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        jwks_text.encode(),
        json.dumps(json.loads(jwks_text)["keys"][0]).encode(),
    ]
    header = {"alg": "HS256", "typ": "JWT", "kid": current.kid}
    for secret in encodings:
        mac = hmac.new(secret, signing_input(header, claims), hashlib.sha256).digest()
        await expect_invalid(api, compose(header, claims, mac), "/api/test/admin")


@memory_only
async def test_tampered_payload_fails_the_signature(api: Api) -> None:
    signed_in = await api.user("mallory")
    token = signed_in["accessToken"]
    response = await api.get("/api/test/admin", token)
    await expect_error(response, 403, REQUIRED_ADMIN, "forbidden")
    header, payload, signature = token_parts(token)
    other = await api.user("victim")
    for changes in (
        {"roles": ["user", "admin"]},
        {"roles": ["admin"]},
        {"sub": other["id"]},
        {"exp": payload["exp"] + 86400},
    ):
        forged = (
            f"{b64url_json(header)}.{b64url_json({**payload, **changes})}.{signature}"
        )
        await expect_invalid(api, forged, "/api/test/admin")
        await expect_invalid(api, forged, "/api/users/me")


@memory_only
@pytest.mark.parametrize(
    "claim", ["exp", "iat", "sub", "sid", "jti", "iss", "typ", "roles"]
)
async def test_every_claim_is_required(api: Api, claim: str) -> None:
    await expect_accepted(api, server_signed(api.app, access_claims(api.app)))
    await expect_invalid(
        api, server_signed(api.app, access_claims(api.app, **{claim: None}))
    )


@memory_only
@pytest.mark.parametrize(
    "changes",
    [
        {"roles": "admin"},  # a string, where `"admin" in roles` would be true
        {"roles": [["admin"]]},
        {"roles": None, "role": "admin"},
        {"sub": 42},
        {"sub": ""},
        {"sid": ["s"]},
        {"jti": ""},
        {"exp": "9999999999"},
        {"iat": "0"},
        {"typ": "refresh"},
        {"typ": "ACCESS"},
    ],
)
async def test_claims_of_the_wrong_type_or_value(
    api: Api, changes: dict[str, Any]
) -> None:
    token = server_signed(api.app, access_claims(api.app, **changes))
    await expect_invalid(api, token, "/api/test/admin")


@memory_only
async def test_future_iat_and_nbf_beyond_the_leeway(api: Api) -> None:
    leeway = api.app[keys.AUTH].settings.tokens.leeway
    now = int(time.time())
    within = access_claims(api.app, iat=now + leeway // 2)
    await expect_accepted(api, server_signed(api.app, within))
    for changes in (
        {"iat": now + leeway + 60, "exp": now + leeway + 600},
        {"iat": now + 10**9, "exp": now + 10**9 + 60},
        {"nbf": now + leeway + 60},
    ):
        await expect_invalid(
            api, server_signed(api.app, access_claims(api.app, **changes))
        )


@memory_only
@pytest.mark.parametrize("issuer", ["someone-else", "", "AUTH-SERVER", ["auth-server"]])
async def test_wrong_issuer(api: Api, issuer: Any) -> None:
    assert api.app[keys.AUTH].settings.tokens.issuer == "auth-server"
    await expect_invalid(
        api, server_signed(api.app, access_claims(api.app, iss=issuer))
    )


@memory_only
async def test_audience_is_checked_when_set(make_api: MakeApi) -> None:
    api = await make_api(tokens={"audience": "orders-api"})
    issued = (await api.user())["accessToken"]
    assert token_parts(issued)[1]["aud"] == "orders-api"
    await expect_accepted(api, issued)
    for audience in ("other-api", ["other-api"], "", None):
        token = server_signed(api.app, access_claims(api.app, aud=audience))
        await expect_invalid(api, token)


@memory_only
@pytest.mark.parametrize("audience", ["auth-server", "orders-api", ["orders-api"]])
async def test_no_audience_is_accepted_when_none_is_set(
    api: Api, audience: Any
) -> None:
    assert api.app[keys.AUTH].settings.tokens.audience == ""
    await expect_invalid(
        api, server_signed(api.app, access_claims(api.app, aud=audience))
    )


@memory_only
@pytest.mark.parametrize(
    "kid", ["unknown", "", "../signing_keys.json", 0, ["k"], {"kid": "k"}, None]
)
async def test_kid_must_name_a_live_key(api: Api, kid: Any) -> None:
    """The signature is the server's own: only the `kid` is wrong (or absent)."""
    token = server_signed(api.app, access_claims(api.app), kid=kid)
    assert token_parts(token)[0].get("kid") == kid
    await expect_invalid(api, token)


@memory_only
async def test_pinned_algorithm_on_hs256(api: Api) -> None:
    """The right secret under another HMAC algorithm is still refused."""
    kid = api.app[keys.AUTH].access_tokens.ring.current.kid
    claims = access_claims(api.app)
    for algorithm, digest in (("HS384", hashlib.sha384), ("HS512", hashlib.sha512)):
        header = {"alg": algorithm, "typ": "JWT", "kid": kid}
        mac = hmac.new(
            TEST_SECRET.encode(), signing_input(header, claims), digest
        ).digest()
        await expect_invalid(api, compose(header, claims, mac))


@memory_only
async def test_embedded_or_remote_keys_in_the_header_are_ignored(
    make_api: MakeApi,
) -> None:
    """`jwk`, `jku` and `x5u` headers name the attacker's key: never trusted."""
    api = await make_api(tokens={"algorithm": "RS256", **GENERATED})
    kid = api.app[keys.AUTH].access_tokens.ring.current.kid
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True)
    claims = access_claims(api.app, roles=["user", "admin"])
    for extra in (
        {"jwk": public_jwk},
        {"jku": "http://attacker.example/jwks.json"},
        {"x5u": "http://attacker.example/cert.pem"},
    ):
        header = {"alg": "RS256", "typ": "JWT", "kid": kid, **extra}
        signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(
            signing_input(header, claims), attacker
        )
        await expect_invalid(api, compose(header, claims, signature), "/api/test/admin")


@memory_only
async def test_tokens_of_the_other_kind_are_refused(api: Api) -> None:
    signed_in = await api.user()
    refresh = signed_in["refreshToken"]
    await expect_invalid(api, refresh)
    response = await api.get("/api/test/user", Authorization=f"Bearer {refresh}")
    await expect_error(response, 401, "Unauthorized!", "token_invalid")
    # The other way round: an access token is no refresh token.
    response = await api.refresh(signed_in["accessToken"])
    await expect_error(
        response, 403, "Refresh token is not in database!", "refresh_unknown"
    )


@memory_only
async def test_a_retired_key_verifies_for_its_window_only(make_api: MakeApi) -> None:
    """Tokens signed before a rotation keep working for access_ttl + leeway; after that
    the retired key is gone, so even a leaked copy of it mints nothing."""
    api = await make_api(tokens={"algorithm": "RS256", **GENERATED})
    settings, tokens = api.app[keys.AUTH].settings, api.app[keys.AUTH].access_tokens
    issued = (await api.user())["accessToken"]
    old = tokens.ring.current
    retired_at = int(time.time())
    tokens.ring = signing_keys.rotate(settings, now=retired_at)
    new = tokens.ring.current
    assert new.kid != old.kid
    await expect_accepted(api, issued)
    assert await _jwks_kids(api) == {old.kid, new.kid}
    fresh = (await api.user())["accessToken"]
    assert token_parts(fresh)[0]["kid"] == new.kid
    window = settings.tokens.access_ttl + settings.tokens.leeway

    # On the server clock, which every reread of the key file (an unknown kid's too)
    # uses: the old key verifies until its window ends, then never again.
    clock.advance(retired_at + window - 3 - clock.now())
    tokens.ring = signing_keys.load_key_ring(settings)
    await expect_accepted(
        api, signed_with(old.signer, "RS256", old.kid, access_claims(api.app))
    )

    clock.advance(4)
    tokens.ring = signing_keys.load_key_ring(settings)
    await expect_invalid(
        api, signed_with(old.signer, "RS256", old.kid, access_claims(api.app))
    )
    assert await _jwks_kids(api) == {new.kid}


async def _jwks_kids(api: Api) -> set[str]:
    return {
        key["kid"]
        for key in (await (await api.get("/.well-known/jwks.json")).json())["keys"]
    }


@memory_only
@pytest.mark.parametrize(
    ("algorithm", "kty", "curve"),
    [("RS256", "RSA", None), ("ES256", "EC", "P-256"), ("EdDSA", "OKP", "Ed25519")],
)
async def test_each_algorithm_signs_and_publishes_a_usable_jwks(
    make_api: MakeApi, algorithm: str, kty: str, curve: str | None
) -> None:
    api = await make_api(tokens={"algorithm": algorithm, **GENERATED})
    signed_in = await api.user()
    token = signed_in["accessToken"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == algorithm
    await expect_accepted(api, token)

    response = await api.get("/.well-known/jwks.json")
    jwks = await response.json()
    assert response.status == 200
    (published,) = jwks["keys"]
    assert published["kid"] == header["kid"]
    assert (published["kty"], published.get("crv"), published["alg"]) == (
        kty,
        curve,
        algorithm,
    )
    assert not PRIVATE_MEMBERS & set(published), published
    assert "PRIVATE" not in await response.text()

    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(token, key, algorithms=[algorithm], issuer="auth-server")
    assert (claims["sub"], claims["typ"]) == (signed_in["id"], "access")

    key_file = api.app[keys.AUTH].settings.storage.data_dir / signing_keys.KEY_FILE_NAME
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    h, payload, signature = token.split(".")
    await expect_invalid(
        api, f"{h}.{payload}.{'A' * len(signature)}"
    )  # all-zero signature


@pytest.mark.parametrize("secret", ["x" * 31, "é" * 15 + "x", "short"])
def test_short_hs256_secrets_are_refused(secret: str) -> None:
    """The rule counts bytes: 16 characters of "é" are 32 bytes, 15 plus one are 31."""
    message = "tokens.secret must be at least 32 bytes (or empty to generate one)"
    with pytest.raises(SettingsError) as refused:
        Settings(tokens=TokenSettings(secret=secret))
    assert str(refused.value) == message
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={"AUTH_TOKENS_SECRET": secret})
    assert str(refused.value) == message


@pytest.mark.parametrize("secret", ["x" * 32, "é" * 16, ""])
def test_hs256_secrets_of_32_bytes_or_generated_are_accepted(secret: str) -> None:
    assert Settings(tokens=TokenSettings(secret=secret)).tokens.secret == secret
