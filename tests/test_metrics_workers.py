"""`python run.py --workers 2`: the same metric totals whichever worker answers.

Which worker serves a connection is the kernel's choice, so the test asks the kernel:
the server end of a connection is a socket in exactly one worker's descriptor table
(/proc/net/tcp gives its inode, /proc/<pid>/fd the owner). Requests are sent to the
worker the test chooses over a connection it has seen that worker accept."""

from __future__ import annotations

import http.client
import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.metrics_kit import Scrape
from tests.server_output import Output
from tests.serverproc import ServerProcess, server_env
from tests.test_workers import Workers, wait_for

PASSWORD = "correct horse battery staple"
PROBE = "/.well-known/jwks.json"  # a route no other request here uses
SETTLE_SECONDS = 10  # far above metrics.FLUSH_INTERVAL


def socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server end of the connection from `client_port`."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (
            int(local.rsplit(":", 1)[1], 16) == server_port
            and int(remote.rsplit(":", 1)[1], 16) == client_port
        ):
            return fields[9]
    return None


def owner(pids: set[int], inode: str | None) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or going while read
            continue
        for fd in descriptors:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


@dataclass
class Cluster:
    processes: Workers
    probes: int = 0  # requests sent to PROBE, counted by the histogram too
    metrics_dirs: set[Path] = field(default_factory=set)

    @property
    def server(self) -> ServerProcess:
        return self.processes.server

    @property
    def workers(self) -> set[int]:
        """The workers that said they serve and are alive."""
        return self.processes.serving()

    def connection_to(self, pid: int) -> http.client.HTTPConnection:
        """A fresh connection that worker `pid` accepted (and served one probe on)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", self.server.port)
            connection.request("GET", PROBE)
            response = connection.getresponse()
            response.read()
            self.probes += 1
            assert response.status == 200
            port = connection.sock.getsockname()[1]
            if owner({pid}, socket_inode(self.server.port, port)) == pid:
                return connection
            connection.close()
        raise AssertionError(f"worker {pid} accepted no connection in 20 s")

    def send(
        self,
        pid: int,
        method: str,
        path: str,
        body: dict | None = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        connection = self.connection_to(pid)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["x-access-token"] = token
        data = json.dumps(body) if body is not None else None
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(raw)
        return response.status, raw.decode()

    def scrape(self, pid: int) -> Scrape:
        status, text = self.send(pid, "GET", "/metrics")
        assert status == 200
        self.note_metrics_dirs()
        return Scrape.parse(text)

    def note_metrics_dirs(self) -> None:
        """The multiprocess directory, as the workers have its files mapped."""
        for pid in self.workers:
            try:
                maps = Path(f"/proc/{pid}/maps").read_text()
            except OSError:  # a worker that has just died
                continue
            for line in maps.splitlines():
                path = Path(line.split()[-1])
                if path.suffix == ".db" and "auth-server-metrics-" in str(path):
                    self.metrics_dirs.add(path.parent)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = server_env(tmp_path_factory.mktemp("metrics-workers"))
    with ServerProcess(env, "--workers", "2") as server:
        started = Cluster(Workers(server, Output(server.process.stdout)))
        assert wait_for(lambda: len(started.workers) == 2, 20)
        yield started


def expected_totals(scrape: Scrape, probes: int) -> dict[str, Any]:
    return {
        "signups": scrape.value("auth_signups_total"),
        "signins": scrape.values("auth_signins_total", "result"),
        "refreshes": {
            k: v
            for k, v in scrape.values("auth_refreshes_total", "outcome").items()
            if v
        },
        "revoked": {
            k: v
            for k, v in scrape.values("auth_sessions_revoked_total", "reason").items()
            if v
        },
        "protected": scrape.requests("/api/test/user", 200),
        "unmatched": scrape.requests("unmatched", 404),
        "probes": scrape.requests(PROBE, 200),
        "probes_sent": probes,
    }


def test_every_worker_answers_the_same_totals(cluster: Cluster) -> None:
    a, b = sorted(cluster.workers)
    body = {"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    assert cluster.send(a, "POST", "/api/auth/signup", body)[0] == 201
    status, tokens = cluster.send(b, "POST", "/api/auth/signin", body)
    assert status == 200
    wrong = {**body, "password": "not the password at all"}
    assert cluster.send(a, "POST", "/api/auth/signin", wrong)[0] == 401
    refresh = {"refreshToken": tokens["refreshToken"]}
    status, rotated = cluster.send(b, "POST", "/api/auth/refreshtoken", refresh)
    assert status == 200
    assert cluster.send(a, "POST", "/api/auth/refreshtoken", {})[0] == 403
    for pid in (a, a, a, b, b):
        assert cluster.send(
            pid, "GET", "/api/test/user", None, tokens["accessToken"]
        ) == (
            200,
            "User Content.",
        )
    assert cluster.send(b, "GET", "/nowhere")[0] == 404
    signout = {"refreshToken": rotated["refreshToken"]}
    assert cluster.send(a, "POST", "/api/auth/signout", signout)[0] == 200

    # Counters are in the files at once; request durations within a flush interval.
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        totals = expected_totals(cluster.scrape(a), cluster.probes)
        flushed = (totals["probes"], totals["protected"], totals["unmatched"])
        if flushed == (totals["probes_sent"], 5, 1):
            break
        assert time.monotonic() < deadline, totals
        time.sleep(0.1)
    assert totals == {
        "signups": 1,
        "signins": {"success": 1, "failure": 1, "disabled": 0, "rate_limited": 0},
        "refreshes": {"rotated": 1, "missing": 1},
        "revoked": {"signout": 1},
        "protected": 5,
        "unmatched": 1,
        "probes": cluster.probes,
        "probes_sent": cluster.probes,
    }
    # Whichever worker answers, the same samples (but for /metrics's own requests and
    # the probes that find a worker, which the comparison counts apart).
    scrapes = []
    for pid in (a, b, a, b, b, a):
        scrape = cluster.scrape(pid)
        assert scrape.requests(PROBE, 200) <= cluster.probes
        scrapes.append(scrape.without_route("/metrics"))
    probe_counts = {
        key for sample in scrapes for key in sample if ("route", PROBE) in key[1]
    }
    fixed = [
        {k: v for k, v in sample.items() if k not in probe_counts} for sample in scrapes
    ]
    assert all(sample == fixed[0] for sample in fixed)
    assert len(fixed[0]) > 100


def test_the_metrics_directory_is_private_to_this_server(cluster: Cluster) -> None:
    cluster.scrape(min(cluster.workers))
    assert len(cluster.metrics_dirs) == 1
    (directory,) = cluster.metrics_dirs
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = {path.name for path in directory.iterdir()}
    for pid in cluster.workers:
        assert f"counter_{pid}.db" in files


def test_a_killed_workers_counts_stay_and_its_gauges_go(cluster: Cluster) -> None:
    a, b = sorted(cluster.workers)
    before = cluster.scrape(b)
    (directory,) = cluster.metrics_dirs
    assert (directory / f"gauge_livesum_{a}.db").exists()
    os.kill(a, signal.SIGKILL)
    assert wait_for(lambda: a not in cluster.workers and len(cluster.workers) == 2, 20)
    assert wait_for(lambda: not (directory / f"gauge_livesum_{a}.db").exists(), 10)
    after = cluster.scrape(b)
    for name, label in (
        ("auth_signins_total", "result"),
        ("auth_refreshes_total", "outcome"),
        ("auth_sessions_revoked_total", "reason"),
    ):
        assert after.values(name, label) == before.values(name, label)
    assert after.value("auth_signups_total") == 1
    assert after.requests("/api/test/user", 200) == 5


def test_the_directory_goes_with_the_server(cluster: Cluster) -> None:
    (directory,) = cluster.metrics_dirs
    process = cluster.server.process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert not directory.exists()
