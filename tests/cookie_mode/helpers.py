"""Cookie mode as a browser sees it, for the HTTP tests: the session cookie taken from
Set-Cookie and sent back by hand (no cookie jar), so a test says exactly which copy of
the cookie each request carries."""

from __future__ import annotations

from dataclasses import dataclass, replace
from http.cookies import Morsel, SimpleCookie
from typing import Any

from tests.conftest import PASSWORD, Api

COOKIE = "auth_session"
REFRESH = "/api/auth/refreshtoken"
SIGNOUT = "/api/auth/signout"
SIGNIN = "/api/auth/signin"
UNSET: Any = object()


def set_cookies(response: Any) -> list[Morsel]:
    """Every Set-Cookie of a response, parsed."""
    morsels = []
    for header in response.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        morsels.extend(jar.values())
    return morsels


def the_cookie(response: Any, name: str = COOKIE) -> Morsel:
    """The one Set-Cookie of a response, which must be the session cookie."""
    morsels = set_cookies(response)
    assert [morsel.key for morsel in morsels] == [name], morsels
    return morsels[0]


@dataclass(frozen=True)
class Tab:
    """One browser tab in cookie mode: its copy of the session cookie (as the server
    coded it), the CSRF token and access token it was last given."""

    api: Api
    cookie: str
    csrf: str
    access: str
    name: str = COOKIE

    async def post(
        self,
        path: str,
        *,
        cookie: str | None = UNSET,
        csrf: str | None = UNSET,
        body: Any = UNSET,
        **headers: str,
    ) -> Any:
        """POST `{}` (or `body`) with this tab's cookie and CSRF token unless told
        otherwise (None leaves one out)."""
        cookie = self.cookie if cookie is UNSET else cookie
        csrf = self.csrf if csrf is UNSET else csrf
        if cookie is not None:
            headers["Cookie"] = f"{self.name}={cookie}"
        if csrf is not None:
            headers["X-CSRF-Token"] = csrf
        return await self.api.client.post(
            path, json={} if body is UNSET else body, headers=headers
        )

    async def refreshed(self, **options: Any) -> Tab:
        """Refresh from the cookie; the tab as the answer leaves it."""
        response = await self.post(REFRESH, **options)
        assert response.status == 200, await response.text()
        body = await response.json()
        return replace(
            self,
            cookie=the_cookie(response, self.name).coded_value,
            csrf=body["csrfToken"],
            access=body["accessToken"],
        )


async def cookie_signin(api: Api, username: str, name: str = COOKIE) -> Tab:
    response = await api.client.post(
        SIGNIN, json={"username": username, "password": PASSWORD, "cookie": True}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    return Tab(
        api,
        the_cookie(response, name).coded_value,
        body["csrfToken"],
        body["accessToken"],
        name,
    )


async def new_tab(api: Api, username: str | None = None) -> Tab:
    """Sign up a user and sign it in in cookie mode."""
    response = await api.signup(username)
    assert response.status == 201, await response.text()
    return await cookie_signin(api, username or f"user{api._counter}")
