"""`python run.py --workers 2` under gunicorn's arbiter: the workers share the port, a
killed worker is replaced while the port keeps answering, SIGHUP replaces the workers one
by one without a refused connection, SIGTERM stops every process; the memory backend is
refused. The tests share one server (starting one costs seconds) and run in this order:
each leaves it with two serving workers, the last one stops it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.server_output import Output
from tests.serverproc import ServerProcess, run_cli, server_env

PASSWORD = "correct horse battery staple"


@dataclass
class Workers:
    server: ServerProcess
    output: Output

    @property
    def arbiter(self) -> int:
        return self.server.process.pid

    def serving(self) -> set[int]:
        """Live workers that said they serve (their listeners accept)."""
        said = {
            int(pid)
            for pid in re.findall(r"Worker serving \(pid: (\d+)\)", self.output.text)
        }
        return said & workers_of(self.arbiter)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    env = server_env(tmp_path_factory.mktemp("workers"))
    with ServerProcess(env, "--workers", "2") as server:
        started = Workers(server, Output(server.process.stdout))
        assert wait_for(lambda: len(started.serving()) == 2, 20)
        yield started


def workers_of(pid: int) -> set[int]:
    """The arbiter's live children (its workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return set()
    return {int(child) for child in children if alive(int(child))}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone, or going while read
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


async def test_workers_share_the_port(workers: Workers) -> None:
    server = workers.server
    body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    assert server.request("POST", "/api/auth/signup", body)[0] == 201
    status, tokens = server.request("POST", "/api/auth/signin", body)
    assert status == 200
    headers = {"x-access-token": tokens["accessToken"]}
    async with aiohttp.ClientSession() as http:

        async def get() -> tuple[int, str]:
            async with http.get(server.url + "/api/test/user", headers=headers) as r:
                return r.status, await r.text()

        results = await asyncio.gather(*(get() for _ in range(20)))
    assert results == [(200, "User Content.")] * 20
    banner = [line for line in workers.output.lines if "Running on" in line]
    assert banner == [
        f"======== Running on http://127.0.0.1:{server.port} with 2 workers ========\n"
    ]


async def test_a_killed_worker_is_replaced_while_the_port_keeps_answering(
    workers: Workers,
) -> None:
    """SIGKILL (as the OOM killer sends) one worker between two requests: every later
    request is answered by the other worker, and a new worker takes its place. (A
    request that the killed worker was handling at that instant cannot be saved.)"""
    before = workers.serving()
    victim = min(before)
    url = workers.server.url + "/api/test/all"
    outcomes = []
    async with fresh_connections() as http:
        for _ in range(20):
            outcomes.append(await call(http, url))
        os.kill(victim, signal.SIGKILL)
        for _ in range(2000):  # continuous requests until the new worker serves
            outcomes.append(await call(http, url))
            now = workers.serving()
            if victim not in now and len(now) == 2:
                break
        for _ in range(20):
            outcomes.append(await call(http, url))
    assert len(workers.serving() - before) == 1
    assert outcomes == ["200 Public Content."] * len(outcomes)
    assert f"Worker (pid:{victim}) was sent SIGKILL!" in workers.output.text
    assert "Traceback" not in workers.output.text


async def test_sighup_replaces_every_worker_without_refusing_a_connection(
    workers: Workers,
) -> None:
    before = workers.serving()
    url = workers.server.url + "/api/test/all"
    done = asyncio.Event()

    async def client(http: aiohttp.ClientSession) -> list[str]:
        results = []
        while not done.is_set():
            results.append(await call(http, url))
        return results

    async with fresh_connections() as http:
        clients = [asyncio.ensure_future(client(http)) for _ in range(4)]
        await asyncio.sleep(0.3)
        os.kill(workers.arbiter, signal.SIGHUP)
        for _ in range(400):  # up to 20 s: two workers replaced one after the other
            await asyncio.sleep(0.05)
            after = workers.serving()
            old_alive = workers_of(workers.arbiter) & before
            if len(after) == 2 and not after & before and not old_alive:
                break
        await asyncio.sleep(0.3)
        done.set()
        outcomes = [x for results in await asyncio.gather(*clients) for x in results]
    assert len(after) == 2 and not after & before, (before, after)
    assert not old_alive  # the old ones finished their requests and exited
    assert len(outcomes) > 20
    assert outcomes == ["200 Public Content."] * len(outcomes)
    assert "Traceback" not in workers.output.text


def test_sigterm_stops_every_process(workers: Workers) -> None:
    process = workers.server.process
    children = workers_of(process.pid)
    assert len(children) == 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert not any(alive(pid) for pid in children)
    assert "Traceback" not in workers.output.text


def test_memory_backend_with_workers_is_refused(tmp_path: Path) -> None:
    env = server_env(tmp_path, AUTH_STORAGE_BACKEND="memory", AUTH_SERVER_WORKERS="3")
    result = run_cli([], env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        'error: storage.backend = "memory" keeps users in each process\'s memory, so '
        "it cannot run with more than one worker: use sqlite or postgres, or one "
        "worker\n"
    )
