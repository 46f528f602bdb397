"""Helpers of the security tests: forging access tokens byte by byte, reading everything a
storage backend holds, and asserting the contract's 401 for a bad token."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from server import clock, keys
from tests.conftest import Api, expect_error

UNAUTHORIZED = "Unauthorized!"
WWW_AUTHENTICATE = 'Bearer error="invalid_token"'
REQUIRED_ADMIN = "Require Admin Role!"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The header and payload of a JWT, decoded without any check, and its signature."""
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), signature


def compose(
    header: dict[str, Any], payload: dict[str, Any], signature: bytes = b""
) -> str:
    return f"{b64url_json(header)}.{b64url_json(payload)}.{b64url(signature)}"


def signing_input(header: dict[str, Any], payload: dict[str, Any]) -> bytes:
    return f"{b64url_json(header)}.{b64url_json(payload)}".encode()


def access_claims(app: web.Application, **changes: Any) -> dict[str, Any]:
    """Complete access-token claims as the server issues them; a change to None drops
    that claim."""
    tokens = app[keys.AUTH].settings.tokens
    now = clock.epoch()
    claims: dict[str, Any] = {
        "sub": "forged-user",
        "roles": ["user"],
        "sid": "forged-session",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 60,
        "iss": tokens.issuer,
        "typ": "access",
    }
    if tokens.audience:
        claims["aud"] = tokens.audience
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def server_signed(app: web.Application, payload: dict[str, Any], **header: Any) -> str:
    """`payload` signed with the server's current key, under the header the server
    writes (`alg`, `typ`, `kid`) with `header` changes applied; None drops a member."""
    key = app[keys.AUTH].access_tokens.ring.current
    return signed_with(key.signer, key.algorithm, key.kid, payload, **header)


def signed_with(
    jwk: Any, algorithm: str, key_id: str, payload: dict[str, Any], **header: Any
) -> str:
    """`payload` signed with a PyJWK's key, whatever the header says."""
    members = {"alg": algorithm, "typ": "JWT", "kid": key_id, **header}
    members = {name: value for name, value in members.items() if value is not None}
    signature = jwk.Algorithm.sign(signing_input(members, payload), jwk.key)
    return compose(members, payload, signature)


async def expect_invalid(api: Api, token: str, path: str = "/api/test/user") -> None:
    """The contract's answer to any bad token that is not expired."""
    response = await api.get(path, token)
    await expect_error(response, 401, UNAUTHORIZED, "token_invalid")
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE


async def stored_bytes(api: Api) -> bytes:
    """Everything the app's storage holds, as bytes: the SQLite files, every PostgreSQL
    row as text (bytea as hex), or every string and bytes value in memory (bytes also
    as hex)."""
    storage = api.app[keys.AUTH].storage
    settings = api.app[keys.AUTH].settings.storage
    if settings.backend == "sqlite":
        database = Path(settings.path)
        files = sorted(database.parent.glob(database.name + "*"))
        assert database in files
        return b"".join(path.read_bytes() for path in files)
    if settings.backend == "postgres":
        return await _postgres_rows(storage)
    return b"\n".join(_memory_values(vars(storage), set()))


async def _postgres_rows(storage: Any) -> bytes:
    async with storage.pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema()"
        )
        rows = []
        for table in tables:
            name = table["table_name"]
            rows += await conn.fetch(f'SELECT t::text AS row FROM "{name}" t')
    assert tables
    return "\n".join(row["row"] for row in rows).encode()


def _memory_values(value: Any, seen: set[int]) -> list[bytes]:
    """Every str and bytes reachable from `value` through containers and objects."""
    if isinstance(value, str):
        return [value.encode("utf-8", "surrogatepass")]
    if isinstance(value, bytes):
        return [value, value.hex().encode()]
    if id(value) in seen or value is None or isinstance(value, (int, float)):
        return []
    seen.add(id(value))
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif dataclasses.is_dataclass(value):
        items = [getattr(value, field.name) for field in dataclasses.fields(value)]
    else:
        return []
    return [found for item in items for found in _memory_values(item, seen)]
