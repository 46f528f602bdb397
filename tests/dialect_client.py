"""Test helpers for the seed dialects: an app with `server.dialects` set, a client that
keeps no cookies (tests send and check them by hand, attribute by attribute), and each
seed's calls."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import ClientResponse, DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer

from server import create_app
from tests.backends import postgres_schema_dsn
from tests.conftest import PASSWORD, Api, make_settings

ALL = ("bezkoder", "cyberwolves", "wpcodevo")


@dataclass
class Answer:
    """A response read whole: status, JSON body, headers and the cookies it sets."""

    status: int
    body: Any
    headers: Any
    cookies: dict[str, dict[str, Any]]


def set_cookies(response: ClientResponse) -> dict[str, dict[str, Any]]:
    """Each Set-Cookie as {"value": ..., attribute (lower case): value or True}."""
    found: dict[str, dict[str, Any]] = {}
    for header in response.headers.getall("Set-Cookie", ()):
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        cookie: dict[str, Any] = {"value": "" if value == '""' else value}
        for attribute in attributes:
            key, equals, text = attribute.partition("=")
            cookie[key.lower()] = text if equals else True
        found[name] = cookie
    return found


class Client(Api):
    """The core's calls (Api) plus the dialects'. Keeps no cookies. `factory` builds
    another app on the same backend (set by `client_factory`)."""

    factory: Callable[..., Awaitable[Client]]

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        cookies: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        headers = dict(headers or {})
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        kwargs: dict[str, Any] = {"headers": headers}
        if json is not None:
            kwargs["json"] = json
        response = await self.client.request(method, path, **kwargs)
        text = await response.text()
        body = (
            await response.json()
            if text and response.content_type.endswith("json")
            else text
        )
        return Answer(response.status, body, response.headers, set_cookies(response))

    # cyberwolves

    async def sign_up(
        self, email: str, name: str = "Some Body", password: str = PASSWORD
    ) -> Answer:
        body = {"userName": name, "email": email, "password": password}
        return await self.call("POST", "/api/signUp", json=body)

    async def log_in(self, email: str, password: str = PASSWORD) -> Answer:
        body = {"email": email, "password": password}
        return await self.call("POST", "/api/logIn", json=body)

    async def cw_refresh(self, token: Any) -> Answer:
        return await self.call(
            "POST", "/api/refreshToken", json={"refreshToken": token}
        )

    async def cw_log_out(self, token: Any) -> Answer:
        body = {"refreshToken": token}
        return await self.call("DELETE", "/api/refreshToken", json=body)

    async def cw_user(self, email: str) -> dict:
        """Sign up and log in through cyberwolves; the login body."""
        assert (await self.sign_up(email)).status == 201
        answer = await self.log_in(email)
        assert answer.status == 200, answer.body
        return answer.body

    # wpcodevo

    async def register(
        self,
        email: str,
        name: str = "Some Body",
        password: str = PASSWORD,
        **extra: Any,
    ) -> Answer:
        body = {
            "name": name,
            "email": email,
            "password": password,
            "passwordConfirm": password,
            **extra,
        }
        return await self.call("POST", "/api/auth/register", json=body)

    async def login(self, email: str, password: str = PASSWORD) -> Answer:
        body = {"email": email, "password": password}
        return await self.call("POST", "/api/auth/login", json=body)

    async def wp_user(self, email: str) -> Answer:
        """Register and log in through wpcodevo; the login answer (cookies included)."""
        assert (await self.register(email)).status == 201
        answer = await self.login(email)
        assert answer.status == 200, answer.body
        return answer

    async def wp_refresh(
        self, refresh_token: str | None, headers: dict[str, str] | None = None
    ) -> Answer:
        cookies = {"refresh_token": refresh_token} if refresh_token else None
        return await self.call(
            "GET", "/api/auth/refresh", cookies=cookies, headers=headers
        )


def cookie_values(answer: Answer) -> dict[str, str]:
    return {name: cookie["value"] for name, cookie in answer.cookies.items()}


def session_of(access_token: str) -> str:
    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


MakeClient = Callable[..., Awaitable[Client]]


@contextlib.asynccontextmanager
async def client_factory(tmp_path: Path, backend: str) -> AsyncIterator[MakeClient]:
    """`build(dialects, **sections)`: the standalone app on `backend` with
    `server.dialects` = dialects, served to a client without a cookie jar."""
    database = (
        postgres_schema_dsn() if backend == "postgres" else contextlib.nullcontext("")
    )
    clients: list[TestClient] = []
    async with database as dsn:

        async def build(dialects: tuple[str, ...] = ALL, **sections: Any) -> Client:
            server = {"dialects": dialects, **sections.pop("server", {})}
            cookies = {"secure": True, **sections.pop("cookies", {})}
            settings = make_settings(
                tmp_path, backend, dsn, server=server, cookies=cookies, **sections
            )
            client = TestClient(
                TestServer(create_app(settings)), cookie_jar=DummyCookieJar()
            )
            await client.start_server()
            clients.append(client)
            built = Client(client)
            built.factory = build
            return built

        try:
            yield build
        finally:
            for client in clients:
                await client.close()
