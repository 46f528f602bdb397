"""`run.py users | set-roles | disable | enable | sessions`: output, exit codes (0 done,
1 refused, 2 bad usage), and on a live database the running server honouring what the
command revoked. Most commands run in this process on the SQLite file (fast); the live
tests run the server as a real process beside them."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from server import cli, clock
from tests.backends import BACKENDS, POSTGRES_DSN, with_search_path
from tests.serverproc import ServerProcess, run_cli, server_env

PASSWORD = "a long admin passphrase"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
ID = r"[0-9a-f]{32}"
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Cli]:
    """`run(*args, stdin="")` runs `run.py` in this process on a fresh SQLite file:
    (exit code, stdout, stderr)."""
    for name in list(os.environ):
        if name.startswith("AUTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AUTH_STORAGE_PATH", str(tmp_path / "data" / "auth.db"))
    monkeypatch.setenv("AUTH_PASSWORDS_BCRYPT_ROUNDS", "4")

    def call(*args: str, stdin: str = "") -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            code = cli.main(list(args))
        except SystemExit as exit_:  # argparse: bad usage
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    yield call


def create(run: Cli, username: str, email: str, *roles: str) -> None:
    clock.advance(1)  # users are listed by creation time
    extra = [arg for role in roles for arg in ("--role", role)]
    code, _, err = run(
        "create-user",
        "--username",
        username,
        "--email",
        email,
        *extra,
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, err


def rows(out: str) -> list[list[str]]:
    """The table's rows (header first) split on runs of two or more spaces, then the
    closing line."""
    return [re.split(r"\s{2,}", line) for line in out.splitlines()]


def user_id(run: Cli, username: str) -> str:
    code, out, _ = run("users", "--search", username)
    assert code == 0
    return rows(out)[1][0]


# users


def test_users_lists_searches_and_limits(run: Cli) -> None:
    assert run("users")[:2] == (0, "No users.\n")
    create(run, "root", "root@example.com", "admin")
    create(run, "alice", "alice@example.com")
    create(run, "bob", "bob@malice.example", "moderator")
    code, out, _ = run("users")
    table = rows(out)
    assert code == 0
    assert table[0] == ["ID", "USERNAME", "EMAIL", "ROLES", "DISABLED", "CREATED"]
    assert [row[1:5] for row in table[1:4]] == [
        ["root", "root@example.com", "user,admin", "no"],
        ["alice", "alice@example.com", "user", "no"],
        ["bob", "bob@malice.example", "user,moderator", "no"],
    ]
    for row in table[1:4]:
        assert re.fullmatch(ID, row[0]) and re.fullmatch(ISO, row[5])
    assert table[4:] == [["3 users."]]
    code, out, _ = run("users", "--search", "LICE")
    assert [row[1] for row in rows(out)[1:-1]] == ["alice", "bob"]
    assert rows(out)[-1] == ["2 users."]
    code, out, _ = run("users", "--limit", "1")
    assert [row[1] for row in rows(out)[1:-1]] == ["root"]
    assert rows(out)[-1] == ["Showing the first 1 user; there are more."]
    assert run("users", "--limit", "3")[1].endswith("\n3 users.\n")
    assert run("users", "--search", "nobody")[:2] == (0, "No users match.\n")
    for bad in ("0", "-1", "x", "1.5"):
        code, _, err = run("users", "--limit", bad)
        assert code == 2 and "--limit: must be a positive integer" in err


# set-roles, disable, enable


def test_set_roles_by_name_email_or_id(run: Cli) -> None:
    create(run, "root", "root@example.com", "admin")
    create(run, "bob", "bob@example.com")
    assert run("set-roles", "bob", "moderator")[:2] == (
        0,
        "bob now has the roles user, moderator (was user); no session revoked.\n",
    )
    assert run("set-roles", "BOB@example.com", "admin", "moderator")[:2] == (
        0,
        "bob now has the roles user, moderator, admin (was user, moderator);"
        " no session revoked.\n",
    )
    assert run("set-roles", user_id(run, "bob"), "user")[:2] == (
        0,
        "bob now has the roles user (was user, moderator, admin); no session revoked.\n",
    )
    assert run("users", "--search", "bob")[1].splitlines()[1].split()[3] == "user"


def test_refusals_exit_1_and_bad_usage_exits_2(run: Cli) -> None:
    create(run, "root", "root@example.com", "admin")
    last_admin = (
        "error: The last admin cannot be removed: root is the only enabled admin.\n"
    )
    assert run("set-roles", "root", "user") == (1, "", last_admin)
    assert run("set-roles", "root", "moderator") == (1, "", last_admin)
    assert run("disable", "root") == (1, "", last_admin)
    nobody = "error: no user 'nobody' (give a username, an email or an id)\n"
    for command in (["set-roles", "nobody", "user"], ["disable", "nobody"]):
        assert run(*command) == (1, "", nobody)
    assert run("enable", "nobody") == (1, "", nobody)
    assert run("sessions", "nobody") == (1, "", nobody)
    for usage in (
        ["set-roles", "root"],
        ["set-roles", "root", "superuser"],
        ["disable"],
        ["sessions", "root", "--revoke", "x", "--revoke-all"],
    ):
        assert run(*usage)[0] == 2, usage
    _, out, _ = run("users")
    assert rows(out)[1][3:5] == ["user,admin", "no"]  # nothing changed


def test_disable_and_enable(run: Cli) -> None:
    create(run, "root", "root@example.com", "admin")
    create(run, "bob", "bob@example.com", "admin")
    assert run("disable", "bob")[:2] == (0, "Disabled bob; no session revoked.\n")
    _, out, _ = run("users", "--search", "bob")
    assert rows(out)[1][3:5] == ["user,admin", "yes"]
    # A disabled admin is no admin: root is now the only one.
    assert run("disable", "root")[0] == 1
    assert run("enable", "bob")[:2] == (0, "Enabled bob: it can sign in again.\n")
    assert run("disable", "root")[:2] == (0, "Disabled root; no session revoked.\n")


# on a live database, with the server running


@pytest.fixture(params=[p for p in BACKENDS if p.id != "memory"])
def live_env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """A server environment on SQLite or on a fresh PostgreSQL schema."""
    env = server_env(tmp_path, AUTH_TOKENS_REVOCATION_POLL="0.2")
    if request.param == "sqlite":
        yield env
        return
    schema = f"test_{uuid.uuid4().hex}"
    asyncio.run(_postgres(f"CREATE SCHEMA {schema}"))
    try:
        dsn = with_search_path(POSTGRES_DSN, schema)
        yield {**env, "AUTH_STORAGE_BACKEND": "postgres", "AUTH_STORAGE_DSN": dsn}
    finally:
        asyncio.run(_postgres(f"DROP SCHEMA {schema} CASCADE"))


async def _postgres(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def in_process(run: Cli, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`run`, on the live server's database."""
    for name, value in env.items():
        if name.startswith("AUTH_"):
            monkeypatch.setenv(name, value)
    return run


def sign_in(server: ServerProcess, username: str) -> dict[str, Any]:
    status, body = server.request(
        "POST", "/api/auth/signin", {"username": username, "password": PASSWORD}
    )
    assert status == 200, body
    return body


def wait_until_refused(server: ServerProcess, token: str) -> tuple[int, Any]:
    """The server learns of a revocation made by another process within its poll
    interval (0.2 s here); the deadline is only a bound on a hung test."""
    deadline = time.monotonic() + 20
    while True:
        answer = server.request("GET", "/api/test/user", token=token)
        if answer[0] != 200 or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


REVOKED_ACCESS = (401, {"message": "Unauthorized!", "code": "token_revoked"})
REVOKED_REFRESH = (
    403,
    {
        "message": "Refresh token was revoked. Please make a new signin request",
        "code": "refresh_revoked",
    },
)


def test_sessions_listed_and_revoked_while_the_server_runs(
    run: Cli, live_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = in_process(run, live_env, monkeypatch)
    create(run, "root", "root@example.com", "admin")
    create(run, "alice", "alice@example.com", "moderator")
    with ServerProcess(live_env) as server:
        laptop = sign_in(server, "alice")
        phone = sign_in(server, "alice")
        code, out, _ = run("sessions", "alice")
        table = rows(out)
        assert code == 0
        assert table[0] == ["ID", "CREATED", "LAST USED", "EXPIRES", "IP", "USER AGENT"]
        assert {row[0] for row in table[1:3]} == {laptop_sid := sid(laptop), sid(phone)}
        for row in table[1:3]:
            assert all(re.fullmatch(ISO, cell) for cell in row[1:4])
            assert row[4:] == [
                "127.0.0.1",
                f"Python-urllib/{sys.version_info[0]}.{sys.version_info[1]}",
            ]
        assert table[3:] == [["2 live sessions."]]

        assert run("sessions", "alice", "--revoke", laptop_sid)[:2] == (
            0,
            f"Revoked session {laptop_sid} of alice.\n",
        )
        refresh = {"refreshToken": laptop["refreshToken"]}
        assert (
            server.request("POST", "/api/auth/refreshtoken", refresh) == REVOKED_REFRESH
        )
        assert wait_until_refused(server, laptop["accessToken"]) == REVOKED_ACCESS
        assert (
            server.request("GET", "/api/test/user", token=phone["accessToken"])[0]
            == 200
        )
        assert run("sessions", "alice", "--revoke", laptop_sid) == (
            1,
            "",
            f"error: alice has no live session '{laptop_sid}'\n",
        )

        # A role given revokes nothing; a role taken away revokes every session.
        assert run("set-roles", "alice", "moderator", "admin")[1].endswith(
            "; no session revoked.\n"
        )
        assert (
            server.request("GET", "/api/test/user", token=phone["accessToken"])[0]
            == 200
        )
        tablet = sign_in(server, "alice")
        assert run("set-roles", "alice", "user")[1] == (
            "alice now has the roles user (was user, moderator, admin);"
            " revoked 2 sessions.\n"
        )
        for signed_in in (phone, tablet):
            assert (
                wait_until_refused(server, signed_in["accessToken"]) == REVOKED_ACCESS
            )

        # Disabled: every session ends and sign-in is refused until enabled again.
        again = sign_in(server, "alice")
        assert run("disable", "alice")[:2] == (
            0,
            "Disabled alice; revoked 1 session.\n",
        )
        assert wait_until_refused(server, again["accessToken"]) == REVOKED_ACCESS
        body = {"username": "alice", "password": PASSWORD}
        assert server.request("POST", "/api/auth/signin", body) == (
            403,
            {"message": "Account is disabled.", "code": "account_disabled"},
        )
        assert run("enable", "alice")[0] == 0
        one, two = sign_in(server, "alice"), sign_in(server, "alice")
        assert run("sessions", "alice", "--revoke-all")[:2] == (
            0,
            "Revoked 2 sessions of alice.\n",
        )
        for signed_in in (one, two):
            assert (
                wait_until_refused(server, signed_in["accessToken"]) == REVOKED_ACCESS
            )
        assert run("sessions", "alice")[:2] == (0, "alice has no live sessions.\n")


def sid(signed_in: dict[str, Any]) -> str:
    import jwt

    claims = jwt.decode(signed_in["accessToken"], options={"verify_signature": False})
    return claims["sid"]


def test_run_py_exit_codes(tmp_path: Path) -> None:
    """The real entry point, once: a refused action exits 1, bad usage 2."""
    env = server_env(tmp_path)
    refused = run_cli(["disable", "nobody"], env)
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        1,
        "",
        "error: no user 'nobody' (give a username, an email or an id)\n",
    )
    usage = run_cli(["sessions"], env)
    assert usage.returncode == 2 and "USER" in usage.stderr
