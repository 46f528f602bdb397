"""Refresh and sign-out from the session cookie: the cookie set again with the rotated
refresh token, reuse detection through old copies of it, sign-out expiring it and
revoking the session, a body token winning over it, and a refused request changing
nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import jwt
import pytest

from server import clock
from tests.conftest import Api, expect_error
from tests.cookie_mode.conftest import MakeBrowserApi
from tests.cookie_mode.helpers import (
    REFRESH,
    SIGNOUT,
    cookie_signin,
    new_tab,
    set_cookies,
    the_cookie,
)
from tests.cookie_mode.test_cookie_signin import attributes, cookie_refresh_token

REFRESHED_BODY = {"accessToken", "tokenType", "expiresIn", "csrfToken"}
SIGNED_OUT = {"message": "You've been signed out!"}
REVOKED_MESSAGE = "Refresh token was revoked. Please make a new signin request"


def sid(access_token: str) -> str:
    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


async def user_route(api: Api, access_token: str) -> int:
    response = await api.get("/api/test/user", Authorization=f"Bearer {access_token}")
    return response.status


async def test_refresh_from_the_cookie(make_browser_api: MakeBrowserApi) -> None:
    api = await make_browser_api()
    tab = await new_tab(api, "alice")
    response = await tab.post(REFRESH)
    assert response.status == 200
    body = await response.json()
    assert set(body) == REFRESHED_BODY
    assert (body["tokenType"], body["expiresIn"]) == ("Bearer", 900)
    assert body["csrfToken"] == tab.csrf  # the session's, for every tab of the browser
    cookie = the_cookie(response)
    assert attributes(cookie) == {
        "httponly": True,
        "samesite": "Strict",
        "path": "/api/auth",
        "secure": True,
        "max-age": "2592000",
        "domain": "",
    }
    before = await cookie_refresh_token(api, tab.cookie)
    after = await cookie_refresh_token(api, cookie.coded_value)
    assert after is not None and after != before  # rotated
    assert after not in await response.text()
    assert sid(body["accessToken"]) == sid(tab.access)
    assert await user_route(api, body["accessToken"]) == 200


async def test_the_latest_csrf_token_is_always_valid(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    for _ in range(3):
        tab = await tab.refreshed()
    assert (await tab.post(REFRESH)).status == 200


async def test_reuse_of_an_old_cookie_revokes_the_session(
    make_browser_api: MakeBrowserApi,
) -> None:
    api = await make_browser_api(tokens={"reuse_interval": 0})
    first = await new_tab(api, "alice")
    second = await first.refreshed()
    third = await second.refreshed()  # the successor was presented: reuse is detectable
    clock.advance(1.05)  # past the reuse interval of 0 s
    response = await first.post(REFRESH)
    await expect_error(response, 403, None, "refresh_reused")
    assert set_cookies(response) == []
    # The whole session is gone: the newest cookie and every access token of it.
    await expect_error(await third.post(REFRESH), 403, None, "refresh_reused")
    for tab in (first, third):
        response = await api.get("/api/test/user", Authorization=f"Bearer {tab.access}")
        await expect_error(response, 401, "Unauthorized!", "token_revoked")


async def test_replays_within_the_reuse_interval_get_the_same_successor(
    make_browser_api: MakeBrowserApi,
) -> None:
    """Several tabs refreshing at once with one cookie must not sign the user out."""
    api = await make_browser_api()
    tab = await new_tab(api, "alice")
    responses = await asyncio.gather(*(tab.post(REFRESH) for _ in range(5)))
    assert [response.status for response in responses] == [200] * 5
    successors = {
        await cookie_refresh_token(api, the_cookie(response).coded_value)
        for response in responses
    }
    assert len(successors) == 1 and None not in successors


async def test_without_rotation_the_cookie_keeps_its_token(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api(tokens={"rotate_refresh": False})
    tab = await new_tab(api, "alice")
    again = await tab.refreshed()
    assert await cookie_refresh_token(api, again.cookie) == await cookie_refresh_token(
        api, tab.cookie
    )


async def test_an_expired_session_is_refused(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api(tokens={"refresh_ttl": 5})
    tab = await new_tab(api, "alice")
    clock.advance(5.5)
    response = await tab.post(REFRESH)
    await expect_error(
        response,
        403,
        "Refresh token was expired. Please make a new signin request",
        "refresh_expired",
    )
    assert set_cookies(response) == []


async def test_signout_expires_the_cookie_and_revokes_the_session(
    make_browser_api: MakeBrowserApi,
) -> None:
    api = await make_browser_api()
    tab = await new_tab(api, "alice")
    refreshed = await tab.refreshed()
    response = await refreshed.post(SIGNOUT)
    assert response.status == 200
    assert await response.json() == SIGNED_OUT
    cookie = the_cookie(response)
    assert cookie.value == ""
    assert attributes(cookie) == {
        "httponly": True,
        "samesite": "Strict",
        "path": "/api/auth",
        "secure": True,
        "max-age": "0",
        "domain": "",
    }
    # Copies of the cookie taken before the sign-out, the latest and an older one.
    for copy in (refreshed, tab):
        response = await copy.post(REFRESH)
        await expect_error(response, 403, REVOKED_MESSAGE, "refresh_revoked")
        assert set_cookies(response) == []
    response = await api.get(
        "/api/test/user", Authorization=f"Bearer {refreshed.access}"
    )
    await expect_error(response, 401, "Unauthorized!", "token_revoked")
    # Signing out again is idempotent, and still expires the cookie.
    again = await refreshed.post(SIGNOUT)
    assert (again.status, await again.json()) == (200, SIGNED_OUT)
    assert the_cookie(again)["max-age"] == "0"


@pytest.mark.parametrize("path", [REFRESH, SIGNOUT])
async def test_no_cookie_and_no_body_token(
    memory_browser_api: MakeBrowserApi, path: str
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    for body in ({}, {"refreshToken": None}, {"refreshToken": ""}):
        response = await tab.post(path, cookie=None, body=body)
        await expect_error(
            response, 403, "Refresh Token is required!", "refresh_missing"
        )
        assert set_cookies(response) == []


@pytest.mark.parametrize(
    "forged",
    [
        "not-a-fernet-token",
        "gAAAAABoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "",
    ],
)
@pytest.mark.parametrize("path", [REFRESH, SIGNOUT])
async def test_a_cookie_we_did_not_write_is_no_cookie(
    memory_browser_api: MakeBrowserApi, path: str, forged: str
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    response = await tab.post(path, cookie=forged)
    await expect_error(response, 403, "Refresh Token is required!", "refresh_missing")
    assert set_cookies(response) == []
    assert (await tab.post(REFRESH)).status == 200  # the real session is untouched


async def test_a_cookie_of_another_server_is_no_cookie(
    memory_browser_api: MakeBrowserApi,
) -> None:
    """Another key (another deployment): nothing it wrote decrypts here."""
    ours = await memory_browser_api()
    tab = await new_tab(ours, "alice")
    theirs = await memory_browser_api()
    response = await replace(tab, api=theirs).post(REFRESH)
    await expect_error(response, 403, "Refresh Token is required!", "refresh_missing")


@pytest.mark.parametrize("path", [REFRESH, SIGNOUT])
async def test_a_body_token_wins_over_the_cookie(
    make_browser_api: MakeBrowserApi, path: str
) -> None:
    """Body mode is unchanged: no CSRF header needed, the cookie neither used nor set."""
    api = await make_browser_api()
    tab = await new_tab(api, "alice")
    signed_in = await api.signin("alice")
    token = (await signed_in.json())["refreshToken"]
    response = await tab.post(path, csrf=None, body={"refreshToken": token})
    assert response.status == 200
    assert set_cookies(response) == []
    if path == REFRESH:
        assert set(await response.json()) == {
            "accessToken",
            "refreshToken",
            "tokenType",
            "expiresIn",
        }
    # The cookie's session was not touched: it still refreshes.
    assert (await tab.post(REFRESH)).status == 200


async def test_a_body_token_is_used_even_when_it_fails(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    response = await tab.post(REFRESH, body={"refreshToken": "unknown"})
    await expect_error(
        response, 403, "Refresh token is not in database!", "refresh_unknown"
    )
    assert (await tab.post(REFRESH)).status == 200


async def test_a_refused_refresh_changes_nothing(
    make_browser_api: MakeBrowserApi,
) -> None:
    """Strict rotation, no reuse interval: had the refused refresh rotated the token,
    presenting the cookie again later would be reuse."""
    api = await make_browser_api(tokens={"reuse_interval": 0, "strict_rotation": True})
    tab = await new_tab(api, "alice")
    for csrf in (None, "wrong", tab.csrf + "x"):
        response = await tab.post(REFRESH, csrf=csrf)
        await expect_error(response, 403, "CSRF check failed.", "csrf_failed")
        assert set_cookies(response) == []
    clock.advance(2)
    refreshed = await tab.refreshed()
    assert await user_route(api, refreshed.access) == 200


async def test_a_refused_signout_changes_nothing(
    make_browser_api: MakeBrowserApi,
) -> None:
    api = await make_browser_api()
    tab = await new_tab(api, "alice")
    for csrf in (None, "wrong"):
        response = await tab.post(SIGNOUT, csrf=csrf)
        await expect_error(response, 403, "CSRF check failed.", "csrf_failed")
        assert set_cookies(response) == []
    response = await tab.post(SIGNOUT, Origin="https://evil.example")
    await expect_error(response, 403, "CSRF check failed.", "csrf_failed")
    assert set_cookies(response) == []
    assert await user_route(api, tab.access) == 200
    assert (await tab.post(REFRESH)).status == 200


async def test_a_csrf_token_of_another_session_is_refused(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    alice = await new_tab(api, "alice")
    other_device = await cookie_signin(api, "alice")
    bob = await new_tab(api, "bob")
    for csrf in (other_device.csrf, bob.csrf):
        response = await alice.post(REFRESH, csrf=csrf)
        await expect_error(response, 403, "CSRF check failed.", "csrf_failed")
