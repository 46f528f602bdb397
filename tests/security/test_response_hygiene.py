"""Nothing secret leaves the server: no response carries a password, a bcrypt hash, a
refresh-token hash, a stack trace or a key, and the security log has one JSON line per
event, with the client's address and user agent and never a token, password or hash."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

import pytest
from aiohttp import ClientResponse

from server import keys
from server.auth import SUCCESSOR_SECRET
from tests.conftest import (
    PASSWORD,
    TEST_SECRET,
    Api,
    MakeApi,
    expect_error,
    make_admin_token,
)
from tests.security.conftest import Clock

pytestmark = pytest.mark.parametrize("backend", ["memory"])
JSON = {"Content-Type": "application/json"}
NEW_PASSWORD = "an entirely new passphrase"
WRONG_PASSWORD = "Tr0ub4dor&3-not-mine"
WEAK_PASSWORD = "qwertyuiop"
AGENT = "SecurityTests/1.0 (+hygiene)"


class Recorder:
    """Sends requests through the app and keeps every response's status, headers and body."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.seen: list[tuple[str, ClientResponse, bytes]] = []

    async def __call__(self, method: str, path: str, **kwargs: Any) -> ClientResponse:
        kwargs.setdefault("headers", {})["User-Agent"] = AGENT
        response = await self.api.client.request(method, path, **kwargs)
        self.seen.append((f"{method} {path}", response, await response.read()))
        return response

    def texts(self) -> list[tuple[str, str]]:
        return [
            (
                label,
                "\n".join([*(f"{k}: {v}" for k, v in r.headers.items()), b.decode()]),
            )
            for label, r, b in self.seen
        ]


def hash_forms(digest: bytes) -> list[str]:
    return [
        digest.hex(),
        digest.hex().upper(),
        base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
        digest.decode("latin-1"),
    ]


class Secrets:
    """Every value that must never be shown: passwords (and the SHA-256 pre-hash bcrypt
    receives), password hashes, refresh-token hashes, keys, stack traces."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.password_hashes: set[str] = set()

    async def remember_hashes(self) -> None:
        """Note the stored password hashes now: users change passwords and are deleted."""
        storage = self.api.app[keys.AUTH].storage
        for name in ("alice", "root-admin"):
            if (user := await storage.find_user(username=name)) is not None:
                self.password_hashes.add(user.password_hash)

    async def all(self, refresh_tokens: list[str]) -> list[str]:
        await self.remember_hashes()
        storage = self.api.app[keys.AUTH].storage
        successor_key = await storage.get_or_create_secret(SUCCESSOR_SECRET, b"unused")
        assert successor_key != b"unused"
        passwords = [PASSWORD, NEW_PASSWORD, WRONG_PASSWORD, WEAK_PASSWORD]
        forbidden = [*passwords, TEST_SECRET, "$2b$", "Traceback", 'File "']
        for password in passwords:
            pre_hash = hashlib.sha256(password.encode()).digest()
            forbidden.append(base64.b64encode(pre_hash).decode())
        forbidden += [*self.password_hashes, *hash_forms(successor_key)]
        for token in refresh_tokens:
            forbidden += hash_forms(hashlib.sha256(token.encode()).digest())
        return forbidden


async def exercise_every_route(api: Api, send: Recorder, secrets: Secrets) -> list[str]:
    """Success and error paths of every route; returns every refresh token issued."""
    user = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    await send("POST", "/api/auth/signup", json=user)
    await secrets.remember_hashes()
    await send("POST", "/api/auth/signup", json=user)
    await send("POST", "/api/auth/signup", json={**user, "username": "alice2"})
    await send(
        "POST",
        "/api/auth/signup",
        json={**user, "username": PASSWORD, "email": PASSWORD},
    )
    await send(
        "POST",
        "/api/auth/signup",
        json={**user, "username": "weakling", "password": WEAK_PASSWORD},
    )
    await send(
        "POST",
        "/api/auth/signup",
        json={**user, "username": "bob", "password": PASSWORD[:5]},
    )
    await send(
        "POST",
        "/api/auth/signup",
        json={**user, "username": "rooty", "roles": ["root"]},
    )
    await send(
        "POST",
        "/api/auth/signup",
        json={**user, "username": "rooty", "roles": ["admin"]},
    )
    signin = {"username": "alice", "password": PASSWORD}
    first = await (await send("POST", "/api/auth/signin", json=signin)).json()
    second = await (await send("POST", "/api/auth/signin", json=signin)).json()
    await send("POST", "/api/auth/signin", json={**signin, "password": WRONG_PASSWORD})
    await send(
        "POST", "/api/auth/signin", json={"username": WRONG_PASSWORD, "password": "x"}
    )
    await send("POST", "/api/auth/signin", json={"username": "alice"})
    await send(
        "POST", "/api/auth/signin", json={"email": PASSWORD, "password": PASSWORD}
    )
    access = {"x-access-token": first["accessToken"]}
    rotated = await (
        await send(
            "POST",
            "/api/auth/refreshtoken",
            json={"refreshToken": first["refreshToken"]},
        )
    ).json()
    for body in ({"refreshToken": "unknown"}, {}, {"refreshToken": 5}):
        await send("POST", "/api/auth/refreshtoken", json=body)
    for path in (
        "/api/test/all",
        "/api/test/user",
        "/api/test/mod",
        "/api/test/admin",
        "/api/users/me",
        "/.well-known/jwks.json",
        "/api/openapi.json",
        "/nowhere",
    ):
        await send("GET", path, headers=dict(access))
        await send("GET", path, headers={"x-access-token": "bad.token.here"})
    await send("GET", "/api/users/me")
    await send("DELETE", "/api/auth/signin")
    await send(
        "POST",
        "/api/auth/signin",
        data=b'{"password": "' + b"x" * 20000 + b'"}',
        headers=dict(JSON),
    )
    await send(
        "POST", "/api/auth/signin", data={"username": "alice", "password": PASSWORD}
    )
    await send(
        "POST",
        "/api/auth/signin",
        data=b'{"password": ' + PASSWORD.encode(),
        headers=dict(JSON),
    )
    change = {"currentPassword": WRONG_PASSWORD, "newPassword": NEW_PASSWORD}
    await send("POST", "/api/auth/password", json=change, headers=dict(access))
    change = {"currentPassword": PASSWORD, "newPassword": WEAK_PASSWORD}
    await send("POST", "/api/auth/password", json=change, headers=dict(access))
    change = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    await send("POST", "/api/auth/password", json=change, headers=dict(access))
    admin = {"x-access-token": await make_admin_token(api.app)}
    await secrets.remember_hashes()
    await send("DELETE", f"/api/users/{first['id']}", headers=dict(access))
    await send("DELETE", "/api/users/no-such-user", headers=dict(admin))
    await send(
        "POST", "/api/auth/signout", json={"refreshToken": second["refreshToken"]}
    )
    await send("POST", "/api/auth/signout", json={})
    await send(
        "POST", "/api/auth/refreshtoken", json={"refreshToken": second["refreshToken"]}
    )
    await send("DELETE", f"/api/users/{first['id']}", headers=dict(admin))
    return [first["refreshToken"], second["refreshToken"], rotated["refreshToken"]]


async def test_no_response_carries_a_secret(api: Api) -> None:
    send = Recorder(api)
    secrets = Secrets(api)
    refresh_tokens = await exercise_every_route(api, send, secrets)
    forbidden = await secrets.all(refresh_tokens)
    assert len(secrets.password_hashes) == 3  # alice's two and the admin's
    statuses = {response.status for _, response, _ in send.seen}
    assert {200, 201, 400, 401, 403, 404, 405, 409, 413, 415} <= statuses
    for label, text in send.texts():
        for secret in forbidden:
            assert secret not in text, f"{label} shows {secret!r}"
    for label, response, body in send.seen:
        if response.status >= 400:
            assert response.content_type == "application/json", label
            assert set(json.loads(body)) == {"message", "code"}, label


async def test_an_unexpected_error_is_a_bare_500(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The stack goes to the log, never to the client."""
    await api.signup("alice")
    storage = api.app[keys.AUTH].storage
    user = await storage.find_user(username="alice")

    async def broken(**_: Any) -> None:
        raise RuntimeError(
            f"database exploded near {user.password_hash} with {TEST_SECRET}"
        )

    monkeypatch.setattr(storage, "find_user", broken)
    with caplog.at_level(logging.ERROR, logger="auth.server"):
        response = await api.signin("alice")
    text = await response.text()
    await expect_error(response, 500, "Internal server error", "internal_error")
    for secret in (
        "exploded",
        user.password_hash,
        TEST_SECRET,
        "Traceback",
        "RuntimeError",
    ):
        assert secret not in text
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


async def test_security_events_are_one_json_line_each(
    make_api: MakeApi, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    api = await make_api(
        tokens={"reuse_interval": 0, "strict_rotation": True},
        ratelimit={"enabled": True, "signin_pair_limit": 2},
    )
    send = Recorder(api)
    caplog.set_level(logging.INFO, logger="auth.security")
    user = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    signin = {"username": "alice", "password": PASSWORD}
    created = await (await send("POST", "/api/auth/signup", json=user)).json()
    first = await (await send("POST", "/api/auth/signin", json=signin)).json()
    await send("POST", "/api/auth/signin", json={**signin, "password": WRONG_PASSWORD})
    rotated = await (
        await send(
            "POST",
            "/api/auth/refreshtoken",
            json={"refreshToken": first["refreshToken"]},
        )
    ).json()
    clock.advance(2)
    await send(
        "POST", "/api/auth/refreshtoken", json={"refreshToken": first["refreshToken"]}
    )
    second = await (await send("POST", "/api/auth/signin", json=signin)).json()
    change = {"currentPassword": PASSWORD, "newPassword": NEW_PASSWORD}
    await send(
        "POST",
        "/api/auth/password",
        json=change,
        headers={"x-access-token": second["accessToken"]},
    )
    await send(
        "POST", "/api/auth/signout", json={"refreshToken": second["refreshToken"]}
    )
    clock.advance(61)  # past the summary window of alice's failed sign-in
    for _ in range(3):
        await send(
            "POST",
            "/api/auth/signin",
            json={"username": "mallory", "password": "x" * 9},
        )
    assert [r.status for _, r, _ in send.seen] == [
        201,
        200,
        401,
        200,
        403,
        200,
        200,
        200,
        401,
        401,
        429,
    ]

    records = [r for r in caplog.records if r.name == "auth.security"]
    lines = [record.getMessage() for record in records]
    assert all("\n" not in line for line in lines)
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == [
        "signup",
        "signin",
        "signin_failed",
        "refresh_reused",
        "signin",
        "password_changed",
        "signout",
        "signin_failed",  # the second within the window is counted, not logged
        "rate_limited",
    ]
    for event in events:
        assert (event["ip"], event["user_agent"]) == ("127.0.0.1", AGENT)
        assert isinstance(event["ts"], int)
    sid_first, sid_second = (session_id(b["accessToken"]) for b in (first, second))
    by_name = {e["event"]: e for e in events}
    assert by_name["signin"]["user_id"] == created["id"]
    assert by_name["signin_failed"].get("user_id") is None  # the last one: unknown user
    assert events[2]["user_id"] == created["id"]
    assert by_name["refresh_reused"]["session_id"] == sid_first
    assert by_name["password_changed"]["user_id"] == created["id"]
    assert by_name["signout"]["session_id"] == sid_second
    assert by_name["rate_limited"]["route"] == "/api/auth/signin"

    tokens = [
        first["accessToken"],
        first["refreshToken"],
        rotated["accessToken"],
        rotated["refreshToken"],
        second["accessToken"],
        second["refreshToken"],
    ]
    forbidden = [*tokens, *await Secrets(api).all(tokens), "x" * 9]
    log_text = "\n".join(lines)
    for secret in forbidden:
        assert secret not in log_text, f"the security log shows {secret!r}"


def session_id(access_token: str) -> str:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))[
        "sid"
    ]


async def test_log_lines_cannot_be_forged_through_the_request(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="auth.security")
    agent = 'x", "event": "signin", "user_id": "admin-id' + "A" * 400
    login = 'nobody\n{"event": "signin", "user_id": "admin-id"}'
    response = await api.client.post(
        "/api/auth/signin",
        json={"username": login, "password": PASSWORD},
        headers={"User-Agent": agent, "X-Forwarded-For": "6.6.6.6"},
    )
    await expect_error(response, 401, None, "invalid_credentials")
    (record,) = [r for r in caplog.records if r.name == "auth.security"]
    line = record.getMessage()
    assert "\n" not in line
    event = json.loads(line)
    assert (event["event"], event["ip"], event.get("user_id")) == (
        "signin_failed",
        "127.0.0.1",
        None,
    )
    assert event["user_agent"] == agent[:256]
