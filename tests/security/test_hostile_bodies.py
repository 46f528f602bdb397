"""Hostile requests: bodies built to break parsers, odd media types and charsets, huge
headers and tokens, control characters and SQL look-alikes. Always a 4xx in the
contract's shape (or aiohttp's own 4xx for oversized headers), never a 5xx."""

from __future__ import annotations

import pytest
from aiohttp import FormData

from tests.backends import BACKENDS
from tests.conftest import PASSWORD, Api, expect_error

memory_only = pytest.mark.parametrize("backend", ["memory"])
JSON = {"Content-Type": "application/json"}
NOT_JSON = "Request body is not valid JSON"
NOT_OBJECT = "Request body must be a JSON object"
TOO_DEEP = "Request body is nested more than 32 levels deep"
USERNAME_RULE = "username must be 3 to 32 characters: letters, digits, '_', '.' or '-'"
INVALID = "Invalid username or password."
QUOTED_PASSWORD = b'"' + PASSWORD.encode() + b'"'


def _signin(password: bytes) -> bytes:
    return b'{"username": "alice", "password": ' + password + b"}"


@memory_only
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, TOO_DEEP),
        (b'{"username": ' + b"[" * 3000 + b"]" * 3000 + b"}", TOO_DEEP),
        (_signin(b"1" + b"0" * 5000), NOT_JSON),  # beyond int's 4300-digit limit
        (_signin(b"1e999999"), "password must be a string"),  # parses as inf
        (b'{"username": -1e999999, "password": "x"}', USERNAME_RULE),
        (_signin(b"Infinity"), "Infinity is not allowed in JSON"),
        (_signin(b"-Infinity"), "-Infinity is not allowed in JSON"),
        (_signin(b'"\\ud800\\udfff\\ud800xxxxxxxx"'), None),  # lone surrogates
        (
            b'{"username": "\xc0\xaf", "password": "x"}',
            "Request body is not valid UTF-8",
        ),
        (
            b'{"username": "\xed\xa0\x80", "password": "x"}',
            "Request body is not valid UTF-8",
        ),
        (b"\xef\xbb\xbf" + _signin(b'"x"'), NOT_JSON),  # a UTF-8 byte-order mark
        (_signin(b'"x"') + b" trailing", NOT_JSON),
        (_signin(b'"x"') + b"\x00", NOT_JSON),
        (b"1", NOT_OBJECT),
        (b"true", NOT_OBJECT),
        (b'"{\\"username\\": \\"alice\\"}"', NOT_OBJECT),
    ],
)
async def test_parser_breakers_are_400(
    api: Api, raw: bytes, message: str | None
) -> None:
    assert len(raw) <= 16384
    response = await api.client.post("/api/auth/signin", data=raw, headers=JSON)
    await expect_error(response, 400, message, "validation_error")


@memory_only
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"username": {"$ne": None}, "password": PASSWORD}, None),
        ({"username": ["alice"], "password": PASSWORD}, None),
        ({"username": "alice", "password": {"$gt": ""}}, "password must be a string"),
        ({"username": "alice", "password": True}, "password must be a string"),
        ({"username": "alice", "password": "x" * 2000}, None),
    ],
)
async def test_operator_objects_are_not_credentials(
    api: Api, body: dict, message: str | None
) -> None:
    await api.signup("alice")
    response = await api.client.post("/api/auth/signin", json=body)
    await expect_error(response, 400, message, "validation_error")


@memory_only
async def test_charsets_other_than_utf8_are_refused(api: Api) -> None:
    await api.signup("alice")
    utf16 = _signin(QUOTED_PASSWORD).decode().encode("utf-16")
    for content_type in (
        "application/json; charset=utf-16",
        "application/json; charset=ascii",
    ):
        response = await api.client.post(
            "/api/auth/signin", data=utf16, headers={"Content-Type": content_type}
        )
        await expect_error(
            response, 400, "Request body must be UTF-8 encoded JSON", "validation_error"
        )
    response = await api.client.post("/api/auth/signin", data=utf16, headers=JSON)
    await expect_error(
        response, 400, "Request body is not valid UTF-8", "validation_error"
    )
    for content_type in (
        "application/json; charset=UTF-8",
        "Application/JSON; charset=utf8",
    ):
        response = await api.client.post(
            "/api/auth/signin",
            data=_signin(QUOTED_PASSWORD),
            headers={"Content-Type": content_type},
        )
        assert response.status == 200, content_type


@memory_only
@pytest.mark.parametrize(
    "path", ["/api/auth/signup", "/api/auth/signin", "/api/auth/signout"]
)
async def test_forms_and_other_media_types_are_415(api: Api, path: str) -> None:
    """What a cross-site form or a bare fetch can send without a CORS preflight."""
    form = FormData()
    form.add_field("username", "alice")
    form.add_field("file", b'{"username": "alice"}', filename="x.json")
    payloads = [
        {"data": form},
        {"data": b'{"refreshToken": "x"}', "headers": {"Content-Type": "text/plain"}},
        {
            "data": b'{"refreshToken": "x"}',
            "headers": {"Content-Type": "application/jsonx"},
        },
        {"data": b'{"refreshToken": "x"}'},  # no Content-Type: application/octet-stream
        {
            "data": b"username=alice",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
        },
    ]
    for payload in payloads:
        response = await api.client.post(path, **payload)
        await expect_error(
            response,
            415,
            "Content-Type must be application/json",
            "unsupported_media_type",
        )


@memory_only
@pytest.mark.parametrize("raw", [b"", b"   \r\n\t "])
async def test_empty_bodies(api: Api, raw: bytes) -> None:
    for path, status, message, code in [
        ("/api/auth/signup", 400, "username is required", "validation_error"),
        ("/api/auth/signin", 400, "password is required", "validation_error"),
        (
            "/api/auth/refreshtoken",
            403,
            "Refresh Token is required!",
            "refresh_missing",
        ),
        ("/api/auth/signout", 403, "Refresh Token is required!", "refresh_missing"),
    ]:
        response = await api.client.post(path, data=raw, headers=JSON)
        await expect_error(response, status, message, code)


@memory_only
@pytest.mark.parametrize(
    "headers",
    [
        {"X-Padding": "a" * 9000},
        {"X-Padding": "a" * 100_000},
        {"x-access-token": "a" * 10_000},
        {"Authorization": "Bearer " + "a" * 10_000},
        {f"X-Header-{n}": "v" * 100 for n in range(200)},
    ],
    ids=["9-kb-header", "100-kb-header", "10-kb-token", "10-kb-bearer", "200-headers"],
)
async def test_oversized_headers_are_a_4xx(api: Api, headers: dict[str, str]) -> None:
    """aiohttp's own limits (8190 bytes a line, a bounded header count) answer before
    the app: a plain 4xx, never a 5xx or a stack trace."""
    response = await api.client.get("/api/test/user", headers=headers)
    text = await response.text()
    assert 400 <= response.status < 500, (response.status, text)
    assert "Traceback" not in text


@memory_only
@pytest.mark.parametrize("size", [4097, 6000, 8000])
async def test_long_tokens_are_invalid(api: Api, size: int) -> None:
    """Under aiohttp's 8190-byte header limit the server answers itself: 401."""
    token = "eyJhbGciOiJIUzI1NiJ9." + "a" * (size - 22) + ".x"
    for headers in ({"x-access-token": token}, {"Authorization": f"Bearer {token}"}):
        response = await api.client.get("/api/test/user", headers=headers)
        await expect_error(response, 401, "Unauthorized!", "token_invalid")


@memory_only
@pytest.mark.parametrize(
    "username",
    [
        "ali\u0000ce",
        "ali\nce",
        "alice\r\n",
        "ali\tce",
        "alice\u200b",
        "\u202ealice",
        "ali\u0007ce",
        "al\u0130ce",
        "\uff41lice",
    ],
)
async def test_control_and_lookalike_characters_in_usernames_are_refused(
    api: Api, username: str
) -> None:
    response = await api.signup(username, email="x@example.com")
    await expect_error(response, 400, USERNAME_RULE, "validation_error")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("field", ["username", "email"])
async def test_nul_and_control_characters_in_a_login_are_just_wrong(
    api: Api, field: str
) -> None:
    await api.signup("alice")
    for login in (
        "ali\u0000ce",
        "alice\u0000",
        "alice@example.com\u0000",
        "ali\nce",
        "\u0007",
    ):
        response = await api.client.post(
            "/api/auth/signin", json={field: login, "password": PASSWORD}
        )
        await expect_error(response, 401, INVALID, "invalid_credentials")


SQL_EMAILS = ["o'brien@example.com", "x'or'1'='1@example.com", "admin'--@example.com"]
SQL_LOGINS = [
    "' OR '1'='1",
    "alice' --",
    "alice'; DROP TABLE users; --",
    "%",
    "al%",
    "_lice",
    "al_ce",
    "*",
    "alice\\",
]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sql_lookalikes_are_plain_data(api: Api) -> None:
    assert (await api.signup("alice", email="alice@example.com")).status == 201
    for n, email in enumerate(SQL_EMAILS):
        response = await api.signup(f"sql{n}", email=email)
        assert response.status == 201, await response.text()
        signed_in = await api.client.post(
            "/api/auth/signin", json={"email": email, "password": PASSWORD}
        )
        body = await signed_in.json()
        assert (signed_in.status, body["username"], body["email"]) == (
            200,
            f"sql{n}",
            email,
        )
        me = await (await api.get("/api/users/me", body["accessToken"])).json()
        assert me["email"] == email
    for login in SQL_LOGINS:
        for field in ("username", "email"):
            response = await api.client.post(
                "/api/auth/signin", json={field: login, "password": PASSWORD}
            )
            await expect_error(response, 401, INVALID, "invalid_credentials")
    response = await api.signup("Robert'); DROP TABLE users;--")
    await expect_error(response, 400, USERNAME_RULE, "validation_error")
    # A LIKE wildcard would make "al_ce" collide with "alice".
    assert (await api.signup("al_ce", email="al_ce@example.com")).status == 201
    assert (await (await api.signin("al_ce")).json())["username"] == "al_ce"
    assert (await (await api.signin("alice")).json())["username"] == "alice"
