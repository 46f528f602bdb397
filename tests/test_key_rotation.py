"""Two server processes sharing one data folder, started apart: tokens signed by either
verify on both, without a single failure, through a `run.py rotate-key` and a scheduled
rotation, and every `kid` handed out is in both JWKS before the first token carrying it.

Short settings make the whole timeline take seconds: each process rereads the key file
every 0.2 s, the JWKS is not cached, so a new key signs 2 s after it is written, and the
schedule publishes a new key once the signer is 2 s old."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import jwt

from tests.server_output import Output
from tests.serverproc import ServerProcess, run_cli, server_env

PASSWORD = "correct horse battery staple"
USER = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}


async def signed_in(http: aiohttp.ClientSession, url: str) -> str:
    async with http.post(url + "/api/auth/signin", json=USER) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["accessToken"]


async def user_route(http: aiohttp.ClientSession, url: str, token: str) -> str:
    headers = {"x-access-token": token}
    async with http.get(url + "/api/test/user", headers=headers) as response:
        return f"{response.status} {await response.text()}"


async def published(http: aiohttp.ClientSession, url: str) -> set[str]:
    async with http.get(url + "/.well-known/jwks.json") as response:
        return {key["kid"] for key in (await response.json())["keys"]}


async def test_two_instances_verify_each_others_tokens_through_rotations(
    tmp_path: Path,
) -> None:
    env = server_env(
        tmp_path,
        AUTH_TOKENS_ALGORITHM="EdDSA",
        AUTH_TOKENS_KEY_RELOAD_INTERVAL="0.2",
        AUTH_TOKENS_JWKS_MAX_AGE="0",
        AUTH_TOKENS_KEY_ROTATION_DAYS=str(2 / 86400),
    )
    with ServerProcess(dict(env)) as one:
        first_output = Output(one.process.stdout)
        assert one.request("POST", "/api/auth/signup", USER)[0] == 201
        with ServerProcess(dict(env)) as other:  # started once the first serves
            other_output = Output(other.process.stdout)
            servers = [one.url, other.url]
            failures: list[str] = []
            signers: list[str] = []  # each kid in the order it started signing
            rotated_kid = ""
            async with aiohttp.ClientSession() as http:
                oldest = await signed_in(http, one.url)
                rotation = None
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    for signer, verifier in (servers, servers[::-1]):
                        token = await signed_in(http, signer)
                        kid = jwt.get_unverified_header(token)["kid"]
                        if not signers or signers[-1] != kid:
                            signers.append(kid)
                        for url in (verifier, signer):
                            outcome = await user_route(http, url, token)
                            if outcome != "200 User Content.":
                                failures.append(f"{kid} on {url}: {outcome}")
                            if kid not in await published(http, url):
                                failures.append(f"{kid} not in the JWKS of {url}")
                    if rotation is None and len(signers) >= 2:
                        rotation = asyncio.ensure_future(
                            asyncio.to_thread(run_cli, ["rotate-key"], env)
                        )
                    if rotation is not None and rotation.done() and not rotated_kid:
                        result = rotation.result()
                        assert result.returncode == 0, result.stderr
                        rotated_kid = _kid_of(result.stdout)
                    if rotated_kid in signers and signers[-1] != rotated_kid:
                        break  # the schedule has replaced the command's key since
                for url in servers:
                    assert await user_route(http, url, oldest) == "200 User Content."
        logs = first_output.text + other_output.text
    assert failures == []
    assert rotated_kid in signers and signers.index(rotated_kid) < len(signers) - 1
    assert len(signers) >= 3, signers
    assert '"scheduled": true' in logs
    assert "Traceback" not in logs


def _kid_of(stdout: str) -> str:
    """The kid `rotate-key` printed: with servers running, published ahead."""
    match = re.match(
        r"Signing key (\S+) is published: running servers verify it now and sign "
        r"with it from \S+ \(in 2 s\); \d+ keys verify tokens\.\n$",
        stdout,
    )
    assert match, stdout
    return match.group(1)
