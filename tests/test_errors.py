"""Any route: unknown routes, wrong methods, hostile and malformed bodies, hygiene."""

from __future__ import annotations

import pytest

from tests.conftest import Api, MakeApi, expect_error

JSON = {"Content-Type": "application/json"}
JSON_ROUTES = [
    "/api/auth/signup",
    "/api/auth/signin",
    "/api/auth/refreshtoken",
    "/api/auth/signout",
]


async def test_unknown_route(api: Api) -> None:
    response = await api.get("/api/nothing/here")
    await expect_error(response, 404, "Route /api/nothing/here not found", "not_found")


async def test_wrong_method(api: Api) -> None:
    response = await api.client.get("/api/auth/signin")
    await expect_error(response, 405, None, "method_not_allowed")
    assert response.headers["Allow"] == "POST"
    response = await api.client.delete("/api/test/all")
    await expect_error(response, 405, None, "method_not_allowed")


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "Request body is not valid JSON"),
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'"text"', "Request body must be a JSON object"),
        (b"null", "Request body must be a JSON object"),
        (b'{"refreshToken": NaN, "username": "a"}', "NaN is not allowed in JSON"),
        (
            b'{"username": "a", "username": "b"}',
            "Duplicate key 'username' in request body",
        ),
        (b"\xff\xfe{}", "Request body is not valid UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "Request body is nested more than 32 levels deep"),
    ],
)
async def test_malformed_bodies(api: Api, path: str, raw: bytes, message: str) -> None:
    response = await api.client.post(path, data=raw, headers=JSON)
    await expect_error(response, 400, message, "validation_error")


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_bodies_must_be_json(api: Api, path: str) -> None:
    response = await api.client.post(path, data={"username": "a", "password": "b"})
    await expect_error(
        response, 415, "Content-Type must be application/json", "unsupported_media_type"
    )
    response = await api.client.post(
        path, data=b'{"a": 1}', headers={"Content-Type": "text/plain"}
    )
    await expect_error(response, 415, None, "unsupported_media_type")


async def test_other_charsets_are_refused(api: Api) -> None:
    response = await api.client.post(
        "/api/auth/signin",
        data='{"username": "é"}'.encode("latin-1"),
        headers={"Content-Type": "application/json; charset=latin-1"},
    )
    await expect_error(
        response, 400, "Request body must be UTF-8 encoded JSON", "validation_error"
    )


async def test_oversized_body(make_api: MakeApi) -> None:
    api = await make_api(server={"max_body_bytes": 2048})
    body = b'{"username": "' + b"a" * 4096 + b'"}'
    response = await api.client.post("/api/auth/signin", data=body, headers=JSON)
    await expect_error(
        response, 413, "Request body is larger than 2048 bytes", "payload_too_large"
    )


async def test_default_body_limit_is_16_kib(api: Api) -> None:
    body = b'{"username": "' + b"a" * 17000 + b'"}'
    response = await api.client.post("/api/auth/signup", data=body, headers=JSON)
    await expect_error(response, 413, None, "payload_too_large")


async def test_security_headers_everywhere(api: Api) -> None:
    for response in (
        await api.get("/api/test/all"),
        await api.get("/nope"),
        await api.client.post("/api/auth/signin", json={}),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Server"] == "auth-server"


async def test_no_secret_in_any_response(api: Api) -> None:
    signed_in = await api.user("alice")
    token = signed_in["accessToken"]
    texts = [
        await (await api.get("/api/users/me", token)).text(),
        await (await api.signin("alice")).text(),
        await (await api.refresh(signed_in["refreshToken"])).text(),
        await (await api.signup("alice")).text(),
    ]
    for text in texts:
        assert "$2b$" not in text
        assert "password" not in text.lower() or "Invalid username or password." in text
        assert "hash" not in text.lower()


async def test_cors_is_off_by_default(api: Api) -> None:
    response = await api.client.get(
        "/api/test/all", headers={"Origin": "http://localhost:8081"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_cors_for_the_seeds_front_end(make_api: MakeApi) -> None:
    api = await make_api(server={"cors_origins": ("http://localhost:8081",)})
    preflight = await api.client.options(
        "/api/auth/signin",
        headers={
            "Origin": "http://localhost:8081",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-access-token",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:8081"
    assert "x-access-token" in preflight.headers["Access-Control-Allow-Headers"]
    response = await api.client.get(
        "/api/test/all", headers={"Origin": "http://localhost:8081"}
    )
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8081"
    other = await api.client.get(
        "/api/test/all", headers={"Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


async def test_over_long_fields_say_so(api: Api) -> None:
    body = {"username": "alice", "email": "a@example.com", "password": "x" * 2000}
    response = await api.client.post("/api/auth/signup", json=body)
    await expect_error(
        response, 400, "password must be at most 1024 characters", "validation_error"
    )
    response = await api.refresh("t" * 600)
    await expect_error(
        response, 400, "refreshToken must be at most 512 characters", "validation_error"
    )


async def test_get_routes_answer_head(api: Api) -> None:
    response = await api.client.head("/api/health")
    assert (response.status, await response.read()) == (200, b"")
    response = await api.client.head("/api/test/user")
    assert response.status == 403  # the same checks as GET
