"""CORS for cookie mode: named origins get credentialed answers (preflight and actual
requests), `*` stays credential-less."""

from __future__ import annotations

import pytest

from tests.cookie_mode.conftest import MakeBrowserApi
from tests.cookie_mode.helpers import REFRESH, SIGNOUT, new_tab, set_cookies

FRONT_END = "http://localhost:8081"
OTHER = "https://other.example"


async def preflight(api: object, path: str, origin: str) -> object:
    return await api.client.options(  # type: ignore[attr-defined]
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-csrf-token",
        },
    )


def header_list(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",")}


@pytest.mark.parametrize("path", [REFRESH, SIGNOUT, "/api/auth/signin"])
async def test_preflight_of_a_named_origin_allows_credentials(
    memory_browser_api: MakeBrowserApi, path: str
) -> None:
    api = await memory_browser_api(server={"cors_origins": (FRONT_END,)})
    response = await preflight(api, path, FRONT_END)
    assert response.status == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == FRONT_END
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert {"content-type", "x-csrf-token", "authorization", "x-access-token"} <= (
        header_list(headers["Access-Control-Allow-Headers"])
    )
    assert "post" in header_list(headers["Access-Control-Allow-Methods"])
    assert headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in headers.getall("Vary")


async def test_credentialed_cookie_mode_from_a_named_origin(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api(server={"cors_origins": (FRONT_END,)})
    tab = await new_tab(api, "alice")
    response = await tab.post(REFRESH, Origin=FRONT_END)
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == FRONT_END
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert header_list(response.headers["Access-Control-Expose-Headers"]) == {
        "retry-after",
        "www-authenticate",
    }
    assert len(set_cookies(response)) == 1
    # Errors carry the CORS headers too, so the page can read why it was refused.
    refused = await tab.post(REFRESH, Origin=FRONT_END, csrf="wrong")
    assert refused.status == 403
    assert refused.headers["Access-Control-Allow-Credentials"] == "true"


async def test_a_wildcard_answers_without_credentials(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api(server={"cors_origins": ("*", FRONT_END)})
    response = await preflight(api, REFRESH, OTHER)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == OTHER
    assert "Access-Control-Allow-Credentials" not in response.headers
    content = await api.client.get("/api/test/all", headers={"Origin": OTHER})
    assert content.headers["Access-Control-Allow-Origin"] == OTHER
    assert "Access-Control-Allow-Credentials" not in content.headers
    # The named origin beside the wildcard still gets credentials.
    named = await preflight(api, REFRESH, FRONT_END)
    assert named.headers["Access-Control-Allow-Credentials"] == "true"
    # And a wildcard origin cannot spend the cookie, whatever the browser would send.
    tab = await new_tab(api, "alice")
    response = await tab.post(REFRESH, Origin=OTHER)
    assert response.status == 403
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_an_unlisted_origin_gets_no_cors_headers(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api(server={"cors_origins": (FRONT_END,)})
    response = await preflight(api, REFRESH, OTHER)
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.status == 405  # no preflight answer: the browser sends nothing
