"""`python run.py` as a new user runs it: serve with no configuration, create-user, purge,
rotate-key."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
import pytest

from tests.backends import POSTGRES_DSN
from tests.serverproc import ServerProcess, free_port, run_cli, server_env

PASSWORD = "a long admin passphrase"


def test_serve_without_configuration_generates_a_private_key(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    with ServerProcess(env) as server:
        assert server.request("GET", "/api/test/all") == (200, "Public Content.")
    key_file = tmp_path / "data" / "signing_keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = json.loads(key_file.read_text())["keys"]
    assert [k["algorithm"] for k in keys] == ["HS256"]


def test_create_user_then_sign_in_as_admin(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    args = [
        "create-user",
        "--username",
        "root",
        "--email",
        "root@example.com",
        "--role",
        "admin",
        "--password-stdin",
    ]
    created = run_cli(args, env, stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    again = run_cli(args, env, stdin=PASSWORD + "\n")
    assert (again.returncode, again.stderr.strip()) == (
        1,
        "error: Failed! Username is already in use!",
    )
    weak = run_cli(
        [
            "create-user",
            "--username",
            "weak",
            "--email",
            "w@example.com",
            "--password-stdin",
        ],
        env,
        stdin="short\n",
    )
    assert (weak.returncode, weak.stderr.strip()) == (
        1,
        "error: password must be at least 8 characters",
    )
    with ServerProcess(env) as server:
        status, body = server.request(
            "POST", "/api/auth/signin", {"username": "root", "password": PASSWORD}
        )
        assert (status, body["roles"]) == (200, ["ROLE_USER", "ROLE_ADMIN"])
        assert server.request("GET", "/api/test/admin", token=body["accessToken"]) == (
            200,
            "Admin Content.",
        )


def test_purge_prints_how_many_tokens_it_deleted(tmp_path: Path) -> None:
    env = server_env(tmp_path, AUTH_TOKENS_REFRESH_TTL="1")
    with ServerProcess(env) as server:
        body = {"username": "alice", "email": "a@example.com", "password": PASSWORD}
        assert server.request("POST", "/api/auth/signup", body)[0] == 201
        for _ in range(3):
            status, _ = server.request(
                "POST", "/api/auth/signin", {"username": "alice", "password": PASSWORD}
            )
            assert status == 200
    time.sleep(1.1)
    purged = run_cli(["purge"], env)
    assert (purged.returncode, purged.stdout.strip()) == (
        0,
        "Purged 3 expired refresh tokens.",
    )
    again = run_cli(["purge"], env)
    assert again.stdout.strip() == "Purged 0 expired refresh tokens."


def test_rotate_key_keeps_old_tokens_valid(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    body = {"username": "alice", "email": "a@example.com", "password": PASSWORD}
    with ServerProcess(env) as server:
        server.request("POST", "/api/auth/signup", body)
        old = server.request("POST", "/api/auth/signin", body)[1]["accessToken"]
    rotated = run_cli(["rotate-key"], env)
    assert rotated.returncode == 0, rotated.stderr
    assert "keys verify tokens" in rotated.stdout
    with ServerProcess(env) as server:
        new = server.request("POST", "/api/auth/signin", body)[1]["accessToken"]
        assert (
            jwt.get_unverified_header(new)["kid"]
            != jwt.get_unverified_header(old)["kid"]
        )
        for token in (old, new):
            assert server.request("GET", "/api/test/user", token=token) == (
                200,
                "User Content.",
            )


def test_rotate_key_refuses_a_configured_secret(tmp_path: Path) -> None:
    env = server_env(tmp_path, AUTH_TOKENS_SECRET="s" * 40)
    result = run_cli(["rotate-key"], env)
    assert result.returncode == 1
    assert "tokens.secret" in result.stderr


def test_bad_settings_stop_the_server_with_a_message(tmp_path: Path) -> None:
    result = run_cli(["serve"], server_env(tmp_path, AUTH_TOKENS_SECRET="short"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: tokens.secret must be at least 32 bytes (or empty to generate one)"
    )


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    with ServerProcess(env) as server:
        taken = dict(env, AUTH_SERVER_PORT=str(server.port))
        result = run_cli(["serve"], taken)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        f"error: cannot listen on 127.0.0.1:{server.port}: Address already in use"
    )


def _bad_dsns() -> list[Any]:
    """(DSN, the one line `run.py` must print); those naming a database or a role need
    the test PostgreSQL server."""
    closed = free_port()  # nothing listens there
    needs_server = pytest.mark.skipif(
        not POSTGRES_DSN,
        reason="AUTH_TEST_POSTGRES_DSN is not set: PostgreSQL tests skipped",
    )
    server = urlsplit(POSTGRES_DSN or "postgresql://postgres@127.0.0.1:5432/x")
    cannot = "error: PostgreSQL: cannot connect with storage.dsn:"
    return [
        pytest.param(
            "postgresql://[bad/x", f"{cannot} Invalid IPv6 URL", id="malformed"
        ),
        pytest.param(
            "postgresql://postgres@127.0.0.1:99999/x",
            f"{cannot} connect(): port must be 0-65535.",
            id="port-out-of-range",
        ),
        pytest.param(
            f"postgresql://postgres@127.0.0.1:{closed}/x",
            "error: PostgreSQL: cannot reach the server: [Errno 111] Connect call "
            f"failed ('127.0.0.1', {closed})",
            id="unreachable",
        ),
        pytest.param(
            urlunsplit(server._replace(path="/no_such_database")),
            f'{cannot} database "no_such_database" does not exist',
            id="unknown-database",
            marks=needs_server,
        ),
        pytest.param(
            urlunsplit(
                server._replace(netloc=f"no_such_role:s3cret@{server.hostname}")
            ),
            f'{cannot} role "no_such_role" does not exist',
            id="unknown-role",
            marks=needs_server,
        ),
    ]


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(("dsn", "said"), _bad_dsns())
def test_a_bad_postgres_dsn_stops_the_server_with_one_line(
    tmp_path: Path, dsn: str, said: str, workers: str
) -> None:
    """Issue 14: no traceback, no worker boot loop: one line naming storage.dsn and why,
    and exit status 1, with one process or several."""
    env = server_env(
        tmp_path,
        AUTH_STORAGE_BACKEND="postgres",
        AUTH_STORAGE_DSN=dsn,
        AUTH_SERVER_PORT=str(free_port()),
    )
    stopped = run_cli(["serve", "--workers", workers], env)
    assert (stopped.returncode, stopped.stdout, stopped.stderr) == (1, "", said + "\n")
