"""Sign-in with `"cookie": true`: the body without the refresh token, the CSRF token, and
the session cookie with exactly the attributes of the contract and the settings."""

from __future__ import annotations

from http.cookies import Morsel

import pytest
from aiohttp.test_utils import make_mocked_request

from server import keys
from tests.conftest import PASSWORD, Api, expect_error
from tests.cookie_mode.conftest import MakeBrowserApi
from tests.cookie_mode.helpers import (
    COOKIE,
    SIGNIN,
    cookie_signin,
    new_tab,
    set_cookies,
    the_cookie,
)

COOKIE_BODY = {
    "id",
    "username",
    "email",
    "roles",
    "accessToken",
    "tokenType",
    "expiresIn",
    "csrfToken",
}


async def signin(api: Api, username: str, **extra: object) -> object:
    body = {"username": username, "password": PASSWORD, **extra}
    return await api.client.post(SIGNIN, json=body)


def attributes(morsel: Morsel) -> dict[str, object]:
    return {
        "httponly": morsel["httponly"],
        "samesite": morsel["samesite"],
        "path": morsel["path"],
        "secure": morsel["secure"],
        "max-age": morsel["max-age"],
        "domain": morsel["domain"],
    }


async def cookie_refresh_token(api: Api, coded_value: str) -> str | None:
    """What the server reads from the cookie: its refresh token."""
    request = make_mocked_request(
        "POST",
        "/api/auth/refreshtoken",
        headers={"Cookie": f"{COOKIE}={coded_value}"},
        app=api.app,
    )
    session = await api.app[keys.AUTH].cookies.read(request)
    return session.refresh_token if session else None


async def test_signin_in_cookie_mode(make_browser_api: MakeBrowserApi) -> None:
    api = await make_browser_api()
    assert (await api.signup("alice")).status == 201
    response = await signin(api, "alice", cookie=True)
    assert response.status == 200
    body = await response.json()
    assert set(body) == COOKIE_BODY
    assert (body["username"], body["email"], body["roles"]) == (
        "alice",
        "alice@example.com",
        ["ROLE_USER"],
    )
    assert (body["tokenType"], body["expiresIn"]) == ("Bearer", 900)
    assert len(body["csrfToken"]) >= 43  # 256 bits, URL-safe
    cookie = the_cookie(response)
    assert attributes(cookie) == {
        "httponly": True,
        "samesite": "Strict",
        "path": "/api/auth",
        "secure": True,
        "max-age": "2592000",
        "domain": "",
    }
    assert response.headers["Cache-Control"] == "no-store"
    # The cookie holds a live refresh token, and nothing but the cookie shows it.
    refresh_token = await cookie_refresh_token(api, cookie.coded_value)
    assert refresh_token is not None and len(refresh_token) >= 43
    assert refresh_token not in await response.text()
    assert refresh_token not in response.headers["Set-Cookie"]
    assert body["csrfToken"] not in response.headers["Set-Cookie"]
    user = await api.get(
        "/api/test/user", Authorization=f"Bearer {body['accessToken']}"
    )
    assert (user.status, await user.text()) == (200, "User Content.")
    by_body = await api.refresh(refresh_token)
    assert by_body.status == 200


async def test_cookie_attributes_follow_the_settings(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api(
        cookies={"name": "sid", "secure": False, "samesite": "Lax"},
        tokens={"refresh_ttl": 3600},
    )
    assert (await api.signup("alice")).status == 201
    response = await signin(api, "alice", cookie=True)
    assert attributes(the_cookie(response, "sid")) == {
        "httponly": True,
        "samesite": "Lax",
        "path": "/api/auth",
        "secure": "",
        "max-age": "3600",
        "domain": "",
    }
    assert "secure" not in response.headers["Set-Cookie"].lower()


@pytest.mark.parametrize("samesite", ["None", "Strict"])
async def test_samesite_none_for_cross_site_front_ends(
    memory_browser_api: MakeBrowserApi, samesite: str
) -> None:
    api = await memory_browser_api(cookies={"samesite": samesite})
    assert (await api.signup("alice")).status == 201
    cookie = the_cookie(await signin(api, "alice", cookie=True))
    assert (cookie["samesite"], cookie["secure"]) == (samesite, True)


@pytest.mark.parametrize("flag", [False, None])
async def test_without_cookie_the_body_mode_is_unchanged(
    memory_browser_api: MakeBrowserApi, flag: bool | None
) -> None:
    api = await memory_browser_api()
    assert (await api.signup("alice")).status == 201
    response = await signin(api, "alice", cookie=flag)
    assert response.status == 200
    assert set(await response.json()) == {
        "id",
        "username",
        "email",
        "roles",
        "accessToken",
        "refreshToken",
        "tokenType",
        "expiresIn",
    }
    assert set_cookies(response) == []


@pytest.mark.parametrize("flag", ["true", 1, [True]])
async def test_cookie_must_be_a_boolean(
    memory_browser_api: MakeBrowserApi, flag: object
) -> None:
    api = await memory_browser_api()
    assert (await api.signup("alice")).status == 201
    response = await signin(api, "alice", cookie=flag)
    await expect_error(
        response, 400, "cookie must be true or false", "validation_error"
    )
    assert set_cookies(response) == []


async def test_a_failed_signin_sets_no_cookie(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    assert (await api.signup("alice")).status == 201
    response = await api.client.post(
        SIGNIN, json={"username": "alice", "password": "wrong password", "cookie": True}
    )
    await expect_error(
        response, 401, "Invalid username or password.", "invalid_credentials"
    )
    assert set_cookies(response) == []


async def test_each_signin_is_its_own_session_with_its_own_csrf_token(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    first = await new_tab(api, "alice")
    second = await cookie_signin(api, "alice")
    assert first.csrf != second.csrf
    assert await cookie_refresh_token(api, first.cookie) != await cookie_refresh_token(
        api, second.cookie
    )
