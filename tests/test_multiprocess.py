"""Several server processes sharing one database: revocations reach every process within
`tokens.revocation_poll`, and concurrent refreshes spread over processes mint one token."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.backends import BACKENDS, postgres_schema_dsn
from tests.serverproc import ServerProcess, server_env

SQL_BACKENDS = [p for p in BACKENDS if p.values[0] != "memory"]
PASSWORD = "correct horse battery staple"
POLL = 0.5


@contextlib.asynccontextmanager
async def two_servers(
    tmp_path: Path, backend: str
) -> AsyncIterator[list[ServerProcess]]:
    database = (
        postgres_schema_dsn() if backend == "postgres" else contextlib.nullcontext("")
    )
    async with database as dsn:
        env = server_env(
            tmp_path,
            AUTH_STORAGE_BACKEND=backend,
            AUTH_STORAGE_DSN=dsn,
            AUTH_TOKENS_REVOCATION_POLL=str(POLL),
        )
        with ServerProcess(dict(env)) as first, ServerProcess(dict(env)) as second:
            yield [first, second]


async def post(
    session: aiohttp.ClientSession, url: str, body: dict
) -> tuple[int, dict]:
    async with session.post(url, json=body) as response:
        return response.status, await response.json()


async def get(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, str]:
    async with session.get(url, headers={"x-access-token": token}) as response:
        return response.status, await response.text()


async def signed_in(session: aiohttp.ClientSession, server: ServerProcess) -> dict:
    body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    await post(session, server.url + "/api/auth/signup", body)
    status, tokens = await post(session, server.url + "/api/auth/signin", body)
    assert status == 200
    return tokens


@pytest.mark.parametrize("backend", SQL_BACKENDS)
async def test_signout_on_one_process_is_honoured_by_the_other(
    tmp_path: Path, backend: str
) -> None:
    async with (
        two_servers(tmp_path, backend) as (one, other),
        aiohttp.ClientSession() as http,
    ):
        tokens = await signed_in(http, one)
        user_route = other.url + "/api/test/user"
        assert await get(http, user_route, tokens["accessToken"]) == (
            200,
            "User Content.",
        )
        status, _ = await post(
            http,
            one.url + "/api/auth/signout",
            {"refreshToken": tokens["refreshToken"]},
        )
        assert status == 200
        await asyncio.sleep(POLL + 0.5)
        status, text = await get(http, user_route, tokens["accessToken"])
        assert (status, text) == (
            401,
            '{"message": "Unauthorized!", "code": "token_revoked"}',
        )


@pytest.mark.parametrize("backend", SQL_BACKENDS)
async def test_concurrent_refreshes_over_two_processes_mint_one_token(
    tmp_path: Path, backend: str
) -> None:
    async with (
        two_servers(tmp_path, backend) as servers,
        aiohttp.ClientSession() as http,
    ):
        token = (await signed_in(http, servers[0]))["refreshToken"]
        results = await asyncio.gather(
            *(
                post(
                    http,
                    servers[n % 2].url + "/api/auth/refreshtoken",
                    {"refreshToken": token},
                )
                for n in range(50)
            )
        )
        assert [status for status, _ in results] == [200] * 50
        assert len({body["refreshToken"] for _, body in results}) == 1
