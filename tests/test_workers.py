"""`python run.py --workers N` under gunicorn's arbiter: a killed worker is replaced while
the port keeps answering, SIGHUP replaces the workers one by one without a refused
connection, SIGTERM stops every process, and the memory backend is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.server_output import Output
from tests.serverproc import ServerProcess, run_cli, server_env

PASSWORD = "correct horse battery staple"


def workers_of(pid: int) -> set[int]:
    """The arbiter's live children (its workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children if _alive(int(child))}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


async def call(http: aiohttp.ClientSession, url: str) -> str:
    """One request on a new connection; the outcome as text (200s and failures alike)."""
    try:
        async with http.get(url) as response:
            return f"{response.status} {await response.text()}"
    except (aiohttp.ClientError, OSError) as exc:
        return f"failed: {type(exc).__name__}"


def fresh_connections() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=10),
    )


async def test_workers_share_the_port(tmp_path: Path) -> None:
    with ServerProcess(server_env(tmp_path), "--workers", "2") as server:
        output = Output(server.process.stdout)
        body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
        assert server.request("POST", "/api/auth/signup", body)[0] == 201
        status, tokens = server.request("POST", "/api/auth/signin", body)
        assert status == 200
        async with aiohttp.ClientSession() as http:
            headers = {"x-access-token": tokens["accessToken"]}
            url = server.url + "/api/test/user"

            async def get() -> tuple[int, str]:
                async with http.get(url, headers=headers) as response:
                    return response.status, await response.text()

            results = await asyncio.gather(*(get() for _ in range(20)))
        assert results == [(200, "User Content.")] * 20
        assert len(workers_of(server.process.pid)) == 2
        assert wait_for(lambda: "with 2 workers ========" in output.text, 5)
        line = next(x for x in output.lines if "Running on" in x)
        assert line == (
            f"======== Running on http://127.0.0.1:{server.port} with 2 workers "
            "========\n"
        )


async def test_a_killed_worker_is_replaced_while_the_port_keeps_answering(
    tmp_path: Path,
) -> None:
    """SIGKILL (as the OOM killer sends) one worker between two requests: every later
    request is answered by the other worker, and a new worker takes its place. (A
    request that the killed worker was handling at that instant cannot be saved.)"""
    with ServerProcess(server_env(tmp_path), "--workers", "2") as server:
        output = Output(server.process.stdout)
        arbiter = server.process.pid
        before = workers_of(arbiter)
        assert len(before) == 2
        victim = min(before)
        url = server.url + "/api/test/all"
        outcomes = []
        async with fresh_connections() as http:
            for _ in range(30):
                outcomes.append(await call(http, url))
            os.kill(victim, signal.SIGKILL)
            replaced = False
            for _ in range(2000):  # continuous requests until the new worker is up
                outcomes.append(await call(http, url))
                after = workers_of(arbiter)
                if victim not in after and len(after) == 2:
                    replaced = True
                    break
            for _ in range(30):
                outcomes.append(await call(http, url))
        assert replaced
        assert outcomes == ["200 Public Content."] * len(outcomes)
        assert wait_for(lambda: "was sent SIGKILL!" in output.text, 5)
        assert "Traceback" not in output.text


async def test_sighup_replaces_every_worker_without_refusing_a_connection(
    tmp_path: Path,
) -> None:
    with ServerProcess(server_env(tmp_path), "--workers", "2") as server:
        output = Output(server.process.stdout)
        arbiter = server.process.pid
        before = workers_of(arbiter)
        url = server.url + "/api/test/all"
        done = asyncio.Event()

        async def client(http: aiohttp.ClientSession) -> list[str]:
            results = []
            while not done.is_set():
                results.append(await call(http, url))
            return results

        async with fresh_connections() as http:
            clients = [asyncio.ensure_future(client(http)) for _ in range(4)]
            await asyncio.sleep(0.3)
            os.kill(arbiter, signal.SIGHUP)
            for _ in range(300):  # up to 15 s: two workers started one after the other
                await asyncio.sleep(0.05)
                after = workers_of(arbiter)
                if len(after) == 2 and not after & before:
                    break
            await asyncio.sleep(0.3)
            done.set()
            outcomes = [
                x for results in await asyncio.gather(*clients) for x in results
            ]
        assert len(after) == 2 and not after & before, (before, after)
        assert len(outcomes) > 100
        assert outcomes == ["200 Public Content."] * len(outcomes)
        assert "Traceback" not in output.text


def test_sigterm_stops_every_process(tmp_path: Path) -> None:
    server = ServerProcess(server_env(tmp_path), "--workers", "2")
    with server:
        output = Output(server.process.stdout)
        workers = workers_of(server.process.pid)
        assert len(workers) == 2
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0
    assert not any(_alive(pid) for pid in workers)
    assert "Traceback" not in output.text


@pytest.mark.parametrize("workers", ["2", "3"])
def test_memory_backend_with_workers_is_refused(tmp_path: Path, workers: str) -> None:
    env = server_env(tmp_path, AUTH_STORAGE_BACKEND="memory")
    result = run_cli(["--workers", workers], env)
    assert result.returncode == 1
    assert result.stderr == (
        'error: storage.backend = "memory" keeps users in each process\'s memory, so '
        "it cannot run with more than one worker: use sqlite or postgres, or one "
        "worker\n"
    )
