"""`server.dialects`: the setting, which routes are mounted and in what order, and what
the three APIs share (users, sessions, revocation, reuse detection)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server import Auth, clock, keys
from server.dialects import REGISTRY, route_set
from server.settings import DIALECTS, SettingsError, load_settings
from tests.conftest import PASSWORD, make_settings
from tests.dialect_client import ALL, Client, MakeClient, client_factory, session_of

CW_ROUTES = {
    ("POST", "/api/signUp"),
    ("POST", "/api/logIn"),
    ("POST", "/api/refreshToken"),
    ("DELETE", "/api/refreshToken"),
}
WP_ROUTES = {
    ("GET", "/api/healthChecker"),
    ("POST", "/api/auth/register"),
    ("POST", "/api/auth/login"),
    ("GET", "/api/auth/refresh"),
    ("GET", "/api/auth/logout"),
    ("GET", "/api/users/me"),
    ("GET", "/api/users"),
}


@pytest.fixture
async def make_client(tmp_path: Path, backend: str) -> AsyncIterator[MakeClient]:
    async with client_factory(tmp_path, backend) as build:
        yield build


@pytest.fixture
async def memory_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    async with client_factory(tmp_path, "memory") as build:
        yield build


# the setting


def test_the_setting(tmp_path: Path) -> None:
    assert make_settings(tmp_path).server.dialects == ("bezkoder",)
    env = {"AUTH_SERVER_DIALECTS": "wpcodevo, bezkoder,cyberwolves"}
    assert load_settings(environ=env).server.dialects == (
        "wpcodevo",
        "bezkoder",
        "cyberwolves",
    )
    # (Refused values, each with its message, are in tests/test_settings.py.)
    with pytest.raises(
        SettingsError, match=re.escape("server.dialects entry 'express'")
    ):
        load_settings(environ={"AUTH_SERVER_DIALECTS": "bezkoder,express"})


def test_every_known_dialect_has_a_route_set() -> None:
    assert tuple(REGISTRY) == DIALECTS
    assert [route_set(name).name for name in DIALECTS] == list(DIALECTS)
    assert {(r.method, r.path) for r in route_set("cyberwolves").routes} == CW_ROUTES
    assert {(r.method, r.path) for r in route_set("wpcodevo").routes} == WP_ROUTES


# what is mounted


async def test_a_dialect_not_listed_adds_nothing(memory_client: MakeClient) -> None:
    client = await memory_client(("bezkoder",))
    shared = {("GET", "/api/users/me"), ("GET", "/api/users")}  # the core's too
    for method, path in sorted(CW_ROUTES | WP_ROUTES - shared):
        answer = await client.call(method, path, json={} if method != "GET" else None)
        expected = {"message": f"Route {path} not found", "code": "not_found"}
        assert (answer.status, answer.body) == (404, expected), (method, path)
    only_cw = await memory_client(("bezkoder", "cyberwolves"))
    answer = await only_cw.call("GET", "/api/healthChecker")
    assert (answer.status, answer.body) == (
        404,
        {"message": "Route /api/healthChecker not found", "code": "not_found"},
    )
    answer = await only_cw.call("GET", "/api/auth/refresh")
    assert answer.status == 404


async def test_first_listed_answers_an_overlap(memory_client: MakeClient) -> None:
    for order, shape in [
        (
            ("bezkoder", "wpcodevo"),
            {"message": "No token provided!", "code": "token_missing"},
        ),
        (
            ("wpcodevo", "bezkoder"),
            {
                "status": "fail",
                "message": "You are not logged in",
                "code": "token_missing",
            },
        ),
    ]:
        client = await memory_client(order)
        answer = await client.call("GET", "/api/users/me")
        assert answer.body == shape, order
        login = await client.wp_user(f"{order[0]}@example.com")
        me = await client.get("/api/users/me", login.body["access_token"])
        body = await me.json()
        assert ("status" in body) == (order[0] == "wpcodevo")


async def test_without_bezkoder_its_api_is_gone_but_documents_stay(
    memory_client: MakeClient,
) -> None:
    client = await memory_client(("wpcodevo",))
    assert (await client.signup()).status == 404
    assert (await client.get("/api/test/all")).status == 404
    assert (await client.get("/.well-known/jwks.json")).status == 200
    document = await (await client.get("/api/openapi.json")).json()
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
    }
    assert described == WP_ROUTES | {
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/ws"),
        ("GET", "/api/health"),
        ("GET", "/metrics"),
    }


async def test_openapi_describes_the_dialects(memory_client: MakeClient) -> None:
    client = await memory_client(ALL)
    document = await (await client.get("/api/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    described = {(m.upper(), p) for p, item in paths.items() for m in item}
    assert described >= CW_ROUTES | WP_ROUTES
    sign_up = paths["/api/signUp"]["post"]
    assert sign_up["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CyberwolvesSignUpBody"
    }
    assert set(sign_up["responses"]) == {"201", "400", "413", "415", "429"}
    error = sign_up["responses"]["413"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/CyberwolvesError"}
    body = schemas["CyberwolvesSignUpBody"]
    assert body["required"] == ["userName", "email", "password"]
    assert body["additionalProperties"] is False
    register = schemas["WpcodevoRegisterBody"]
    assert register["required"] == ["name", "email", "password", "passwordConfirm"]
    me = paths["/api/users/me"]["get"]  # the core's: bezkoder is listed first
    assert me["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UserRecord"
    }
    users = paths["/api/users"]["get"]  # the core's admin list, for the same reason
    assert users["security"] and set(users["responses"]) == {"200", "400", "401", "403"}
    assert [p["name"] for p in users["parameters"]] == ["limit", "cursor", "q"]


async def test_embedded_with_prefixes(tmp_path: Path) -> None:
    """A host app gets the dialects it lists; their /api/auth and /api/users paths move
    with the prefixes, the others stay where the tutorials put them."""
    settings = make_settings(tmp_path, server={"dialects": ALL})
    app = web.Application()
    Auth(settings).setup(app, prefix="/auth", users_prefix="/people")
    async with TestClient(TestServer(app)) as http:
        client = Client(http)
        assert (await client.sign_up("host@example.com")).status == 201
        login = await client.call(
            "POST",
            "/auth/login",
            json={"email": "host@example.com", "password": PASSWORD},
        )
        assert login.status == 200
        token = login.body["access_token"]
        me = await client.call(
            "GET", "/people/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.status == 200 and "status" not in me.body  # bezkoder first
        assert (await client.call("GET", "/api/healthChecker")).status == 200
        assert (await client.call("POST", "/api/auth/login", json={})).status == 404


# one user base, shared sessions


async def test_a_user_made_anywhere_signs_in_everywhere(
    make_client: MakeClient,
) -> None:
    client = await make_client(ALL)
    assert (await client.sign_up("cw@example.com")).status == 201
    assert (await client.register("wp@example.com")).status == 201
    assert (await client.signup("core", email="core@example.com")).status == 201
    for email in ("cw@example.com", "wp@example.com", "Core@Example.com"):
        core = await client.client.post(
            "/api/auth/signin", json={"email": email, "password": PASSWORD}
        )
        assert core.status == 200, email
        assert (await client.log_in(email)).status == 200, email
        assert (await client.login(email)).status == 200, email
    taken = {
        "cyberwolves": await client.sign_up("WP@example.com"),
        "wpcodevo": await client.register("core@EXAMPLE.com"),
    }
    assert taken["cyberwolves"].body["code"] == "email_taken"
    assert taken["wpcodevo"].body["code"] == "email_taken"
    signup = await client.signup("other", email="CW@example.com")
    assert (await signup.json())["code"] == "email_taken"


async def test_refresh_tokens_work_across_dialects(make_client: MakeClient) -> None:
    client = await make_client(("wpcodevo", "bezkoder", "cyberwolves"))
    cw = await client.cw_user("sam@example.com")
    # A cyberwolves refresh token on the core's refresh route, and back.
    core = await (await client.refresh(cw["refreshToken"])).json()
    assert session_of(core["accessToken"]) == session_of(cw["accessToken"])
    answer = await client.cw_refresh(core["refreshToken"])
    assert answer.status == 200
    # In the wpcodevo cookie too; its access token opens the core's routes.
    wp = await client.wp_refresh(core["refreshToken"])
    assert wp.status == 200
    assert session_of(wp.body["access_token"]) == session_of(cw["accessToken"])
    assert (await client.get("/api/test/user", wp.body["access_token"])).status == 200
    # Signed out on the core's route: refused in every dialect.
    await client.signout(cw["refreshToken"])
    assert (await client.cw_refresh(cw["refreshToken"])).body["code"] == (
        "refresh_revoked"
    )
    latest = wp.cookies["refresh_token"]["value"]
    assert (await client.wp_refresh(latest)).body["code"] == "refresh_revoked"


async def test_a_wpcodevo_logout_ends_the_session_everywhere(
    make_client: MakeClient,
) -> None:
    client = await make_client(("wpcodevo", "bezkoder", "cyberwolves"))
    login = await client.wp_user("tom@example.com")
    cookies = {
        "access_token": login.body["access_token"],
        "refresh_token": login.cookies["refresh_token"]["value"],
    }
    assert (await client.call("GET", "/api/auth/logout", cookies=cookies)).status == 200
    core = await client.refresh(cookies["refresh_token"])
    assert (await core.json())["code"] == "refresh_revoked"
    answer = await client.cw_refresh(cookies["refresh_token"])
    assert answer.body["code"] == "refresh_revoked"
    response = await client.get("/api/test/user", cookies["access_token"])
    assert (response.status, (await response.json())["code"]) == (401, "token_revoked")


async def test_reuse_detected_in_one_dialect_ends_the_session_in_all(
    make_client: MakeClient,
) -> None:
    client = await make_client(ALL, tokens={"reuse_interval": 0})
    login = await client.wp_user("uri@example.com")
    first = login.cookies["refresh_token"]["value"]
    successor = (await client.wp_refresh(first)).cookies["refresh_token"]["value"]
    assert (await client.wp_refresh(successor)).status == 200  # adopted
    clock.advance(1)
    stolen = await client.cw_refresh(first)
    assert (stolen.status, stolen.body["code"]) == (400, "refresh_reused")
    core = await client.refresh(successor)
    assert (core.status, (await core.json())["code"]) == (403, "refresh_reused")
    response = await client.get("/api/test/user", login.body["access_token"])
    assert (response.status, (await response.json())["code"]) == (401, "token_revoked")


async def test_names_are_kept_as_display_names(memory_client: MakeClient) -> None:
    client = await memory_client(ALL)
    assert (await client.sign_up("vic@example.com", "Vic Ünal")).status == 201
    assert (await client.register("wes@example.com", "王 Wes")).status == 201
    storage = client.app[keys.AUTH].storage
    names = [
        (await storage.find_user(email=email)).display_name
        for email in ("vic@example.com", "wes@example.com")
    ]
    assert names == ["Vic Ünal", "王 Wes"]


async def test_every_dialect_signs_with_the_configured_algorithm(
    memory_client: MakeClient,
) -> None:
    """wpcodevo's RS256 is `tokens.algorithm = "RS256"`; its public key is published."""
    client = await memory_client(ALL, tokens={"algorithm": "RS256", "secret": ""})
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    published = {key["kid"] for key in jwks["keys"]}
    wp = (await client.wp_user("yan@example.com")).body["access_token"]
    cw = (await client.log_in("yan@example.com")).body["accessToken"]
    for token in (wp, cw):
        header = jwt.get_unverified_header(token)
        assert header["alg"] == "RS256"
        assert header["kid"] in published
