"""Security events: the standard fields on every line, summaries of repeated events,
and a cap on lines a second that no client can push past. Time is the server clock,
frozen here, so every count is exact."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import clock, events
from server.events import flush_events, log_event, run_event_summaries
from storage import RevokeReason
from tests.conftest import PASSWORD, Api, MakeApi, make_admin_token

STANDARD = {"user_id", "session_id", "ip", "user_agent", "route"}
T0 = 1_800_000_000.0


class FrozenClock:
    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[FrozenClock]:
    """The server clock stopped at T0 (moved only by `advance`), and a fresh event log
    made on it."""
    frozen = FrozenClock()
    monkeypatch.setattr(clock, "now", lambda: frozen.now)
    events.reset_events()
    yield frozen
    events.reset_events()


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """The security log so far, parsed (a live view: read it after acting)."""
    caplog.set_level(logging.INFO, logger="auth.security")

    class Lines(list):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(self._read())

        def __len__(self) -> int:
            return len(self._read())

        def __getitem__(self, index):  # type: ignore[no-untyped-def]
            return self._read()[index]

        def _read(self) -> list[dict]:
            return [
                json.loads(r.getMessage())
                for r in caplog.records
                if r.name == "auth.security"
            ]

    return Lines()


def token_session(access_token: str) -> str:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))[
        "sid"
    ]


def limited(ip: str, route: str = "/api/auth/refreshtoken") -> None:
    log_event("rate_limited", level=logging.WARNING, ip=ip, route=route)


@pytest.mark.parametrize("backend", ["memory"])
async def test_every_line_carries_the_standard_fields(
    api: Api, lines: list[dict]
) -> None:
    headers = {"User-Agent": "agent/1.0"}
    created = await (await api.signup("alice")).json()
    signed_in = await api.client.post(
        "/api/auth/signin",
        json={"username": "alice", "password": PASSWORD},
        headers=headers,
    )
    body = await signed_in.json()
    await api.client.post(
        "/api/auth/signin",
        json={"username": "alice", "password": "not the password at all"},
        headers=headers,
    )
    admin = await make_admin_token(api.app)
    deleted = await api.client.delete(
        f"/api/users/{created['id']}", headers={"x-access-token": admin, **headers}
    )
    assert deleted.status == 200
    seen = list(lines)
    assert [line["event"] for line in seen] == [
        "signup",
        "signin",
        "signin_failed",
        "user_deleted",
    ]
    for line in seen:
        assert set(line) >= STANDARD, line
        assert line["ip"] == "127.0.0.1"
    signin, failed, deleted_line = seen[1:]
    assert (signin["user_id"], signin["route"], signin["user_agent"]) == (
        created["id"],
        "/api/auth/signin",
        "agent/1.0",
    )
    assert signin["session_id"] == token_session(body["accessToken"])
    assert (failed["user_id"], failed["session_id"]) == (created["id"], None)
    assert deleted_line["route"] == "/api/users/{id}"
    assert deleted_line["user_id"] == created["id"]


def test_without_a_request_the_standard_fields_are_null(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    log_event("key_rotated", level=logging.WARNING, kid="k1")
    assert list(lines) == [
        {
            "event": "key_rotated",
            "ts": int(T0),
            "user_id": None,
            "session_id": None,
            "ip": None,
            "user_agent": None,
            "route": None,
            "kid": "k1",
        }
    ]


def test_repeated_rate_limited_events_are_one_line_and_a_summary(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    for _ in range(5):
        limited("203.0.113.1")
        frozen.advance(1)
    limited("203.0.113.2")  # another key: its own first line
    limited("203.0.113.1", route="/api/auth/signin")  # so is another route
    assert [(x["ip"], x["route"]) for x in lines] == [
        ("203.0.113.1", "/api/auth/refreshtoken"),
        ("203.0.113.2", "/api/auth/refreshtoken"),
        ("203.0.113.1", "/api/auth/signin"),
    ]
    frozen.advance(54.9)  # 59.9 s after the first: the window is still open
    flush_events()
    assert len(lines) == 3
    frozen.advance(0.1)
    flush_events()
    assert lines[3] == {
        "event": "rate_limited",
        "ts": int(T0) + 60,
        "user_id": None,
        "session_id": None,
        "ip": "203.0.113.1",
        "user_agent": None,
        "route": "/api/auth/refreshtoken",
        "suppressed": 4,
        "window": 60,
        "since": int(T0),
    }
    assert len(lines) == 4  # the other keys had nothing to summarise
    limited("203.0.113.1")  # a new window: logged in full again
    assert (len(lines), lines[4].get("suppressed")) == (5, None)


def test_a_summary_falls_due_on_the_next_event_too(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    for _ in range(3):
        limited("198.51.100.9")
    frozen.advance(61)
    log_event("signup", user_id="u1")
    assert [(x["event"], x.get("suppressed")) for x in lines] == [
        ("rate_limited", None),
        ("rate_limited", 2),
        ("signup", None),
    ]


def test_signin_failures_from_one_address_are_summarised(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    for n in range(10):  # spraying many accounts from one address
        log_event(
            "signin_failed", level=logging.WARNING, ip="192.0.2.5", user_id=f"u{n}"
        )
    log_event("signin_failed", level=logging.WARNING, ip="192.0.2.6", user_id="u0")
    frozen.advance(60)
    flush_events()
    assert [(x["ip"], x["user_id"], x.get("suppressed")) for x in lines] == [
        ("192.0.2.5", "u0", None),
        ("192.0.2.6", "u0", None),
        ("192.0.2.5", None, 9),
    ]


def test_no_flood_grows_the_log_faster_than_the_cap(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    """Every event from a new address opens a window and wants a line: the bucket
    lets BURST through, then LINES_PER_SECOND; the rest are counted and reported."""
    assert (events.BURST, events.LINES_PER_SECOND) == (500, 50.0)
    for n in range(2000):
        limited(f"10.1.{n // 256}.{n % 256}")
    assert len(lines) == 500
    frozen.advance(1)
    flush_events()
    assert len(lines) == 501
    assert lines[500]["event"] == "events_dropped"
    assert lines[500]["dropped"] == {"rate_limited": 1500}
    assert lines[500]["since"] == int(T0)
    for n in range(200):  # one second later: 50 new lines allowed
        limited(f"10.2.{n // 256}.{n % 256}")
    assert len(lines) == 551
    flush_events()  # less than REPORT_INTERVAL since the last report
    assert len(lines) == 551
    frozen.advance(1)
    flush_events()
    assert lines[-1]["dropped"] == {"rate_limited": 150}
    assert len(lines) == 552


def test_a_flood_cannot_crowd_out_the_events_that_matter(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    for n in range(1000):
        limited(f"10.3.{n // 256}.{n % 256}")
    log_event("refresh_reused", level=logging.WARNING, user_id="u1", session_id="s1")
    assert lines[-1]["event"] == "refresh_reused"
    assert (lines[-1]["user_id"], lines[-1]["session_id"]) == ("u1", "s1")


def test_a_summary_without_a_line_to_spare_is_counted(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    for _ in range(7):
        limited("192.0.2.77")
    for n in range(600):  # spend the allowance
        limited(f"10.4.{n // 256}.{n % 256}")
    frozen.advance(60)
    bucket = events._events.other
    bucket.tokens, bucket.updated = 0, frozen.now  # none left when the window ends
    flush_events()
    assert lines[-1]["event"] == "events_dropped"
    assert lines[-1]["dropped"] == {"rate_limited": 101 + 6}


def test_the_summary_table_is_bounded(
    frozen: FrozenClock, lines: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "MAX_SUMMARY_KEYS", 3)
    for n in range(5):
        limited(f"192.0.2.{n}")
        limited(f"192.0.2.{n}")
    assert len(events._events.windows) == 3
    # the first three keys are summarised; the others, past the table, log each line
    assert [x["ip"] for x in lines] == [
        "192.0.2.0",
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.4",
    ]


async def test_run_event_summaries_flushes_in_a_quiet_spell(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    limited("192.0.2.200")
    limited("192.0.2.200")
    task = asyncio.ensure_future(run_event_summaries(every=0))
    try:
        frozen.advance(60)
        for _ in range(100):
            await asyncio.sleep(0)
            if len(lines) == 2:
                break
        assert lines[1]["suppressed"] == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_stopping_the_summaries_writes_the_open_counts(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    for _ in range(4):
        limited("192.0.2.201")
    task = asyncio.ensure_future(run_event_summaries())
    await asyncio.sleep(0)
    frozen.advance(5)  # the window is still open
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(x["ip"], x.get("suppressed"), x.get("since")) for x in lines] == [
        ("192.0.2.201", None, None),
        ("192.0.2.201", 3, int(T0)),
    ]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_session_events_name_the_user_and_the_session(
    make_api: MakeApi, lines: list[dict]
) -> None:
    """The event to alert on, refresh_reused, and sign-out carry who and which session,
    with the address, user agent and route."""
    api = await make_api(tokens={"strict_rotation": True, "reuse_interval": 0})
    signed_in = await api.user("bob")
    sid = token_session(signed_in["accessToken"])
    headers = {"User-Agent": "thief/2.0"}
    first = await api.refresh(signed_in["refreshToken"], **headers)
    successor = (await first.json())["refreshToken"]
    await api.refresh(successor, **headers)  # the successor is used: its parent retires
    reused = await api.refresh(signed_in["refreshToken"], **headers)
    assert (await reused.json())["code"] == "refresh_reused"
    (line,) = [line for line in lines if line["event"] == "refresh_reused"]
    assert (line["user_id"], line["session_id"]) == (signed_in["id"], sid)
    assert (line["ip"], line["user_agent"], line["route"]) == (
        "127.0.0.1",
        "thief/2.0",
        "/api/auth/refreshtoken",
    )
    other = await api.user("carol")
    await api.signout(other["refreshToken"])
    (signout,) = [line for line in lines if line["event"] == "signout"]
    assert (signout["user_id"], signout["session_id"]) == (
        other["id"],
        token_session(other["accessToken"]),
    )


# Which events are audit events, and csrf_failed under a flood.

SERVER = Path(__file__).resolve().parent.parent / "server"
# `log_event("x"`, the service's `self._event("x"`, the CLI's `_log("x"`.
EMITTED_LITERAL = re.compile(r"""(?:log_event|_event|_log)\(\s*["']([a-z_]+)["']""")


def literal_names() -> set[str]:
    """The event names written out at the emitters."""
    names: set[str] = set()
    for path in SERVER.rglob("*.py"):
        names.update(EMITTED_LITERAL.findall(path.read_text()))
    return names


def emitted_names() -> set[str]:
    """Every event name the server can emit: those, and the revocation reasons (some
    are logged under their value)."""
    return literal_names() | {reason.value for reason in RevokeReason}


def test_the_audit_events_are_the_account_session_and_key_events() -> None:
    audit = events.AUDIT_EVENTS
    assert audit == {
        "signup",
        "signin",
        "signout",
        "refresh_reused",
        "password_changed",
        "user_updated",
        "user_deleted",
        "user_disabled",
        "role_removed",
        "session_revoked",
        "others_revoked",
        "key_rotated",
    }
    emitted = emitted_names()
    assert audit <= emitted, "a name no emitter uses (misspelt?)"
    assert set(events.SUMMARISED) <= emitted
    assert not audit & set(events.SUMMARISED)
    assert {"user_enabled", "roles_changed", "sessions_revoked"}.isdisjoint(emitted)


def test_the_module_docstring_names_every_emitted_event() -> None:
    words = set(re.findall(r"[a-z_]+", events.__doc__ or ""))
    assert literal_names() - words == set()
    assert events.AUDIT_EVENTS - words == set()
    assert literal_names() >= {"csrf_failed", "session_cookie_invalid", "user_updated"}


@pytest.mark.parametrize("backend", ["memory"])
async def test_admin_and_session_events_are_written_when_a_flood_spent_the_rest(
    make_api: MakeApi, lines: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revocations and account changes draw on the audit allowance: with the
    other allowance spent (a bucket that never refills), each is still one line."""
    monkeypatch.setattr(events._events, "other", events.TokenBucket(0.0, 0))
    api = await make_api()
    admin = await make_admin_token(api.app)
    bob = await api.user("bob", roles=["user", "moderator"])
    again = await (await api.signin("bob")).json()
    third = await (await api.signin("bob")).json()
    limited("203.0.113.50")  # dropped: the other allowance is spent
    revoke_one = await api.client.delete(
        f"/api/auth/sessions/{token_session(again['accessToken'])}",
        headers={"x-access-token": bob["accessToken"]},
    )
    assert revoke_one.status == 200
    revoke_others = await api.client.delete(
        "/api/auth/sessions", headers={"x-access-token": third["accessToken"]}
    )
    assert (await revoke_others.json())["revoked"] == 1
    for change in ({"roles": ["user"]}, {"disabled": True}, {"disabled": False}):
        if "roles" in change or change["disabled"]:  # a session to revoke
            assert (await api.signin("bob")).status == 200
        response = await api.client.patch(
            f"/api/users/{bob['id']}", json=change, headers={"x-access-token": admin}
        )
        assert response.status == 200, await response.text()
    assert [line["event"] for line in lines] == [
        "signup",
        "signin",
        "signin",
        "signin",
        "session_revoked",
        "others_revoked",
        "signin",
        "user_updated",
        "role_removed",
        "signin",
        "user_updated",
        "user_disabled",
        "user_updated",  # enabling revokes nothing
    ]
    assert [line["ip"] for line in lines if line["event"] == "rate_limited"] == []


def test_csrf_failures_are_summarised_under_a_flood(
    frozen: FrozenClock, lines: list[dict]
) -> None:
    for _ in range(100):
        log_event(
            "csrf_failed",
            level=logging.WARNING,
            ip="198.51.100.3",
            route="/api/auth/refreshtoken",
            reason="token",
        )
    for _ in range(20):
        log_event(
            "csrf_failed",
            level=logging.WARNING,
            ip="198.51.100.3",
            route="/api/auth/refreshtoken",
            reason="origin",
            origin="https://evil.example",
        )
    assert [(x["reason"], x.get("suppressed")) for x in lines] == [
        ("token", None),
        ("origin", None),
    ]
    frozen.advance(60)
    flush_events()
    assert [(x["reason"], x.get("suppressed")) for x in lines[2:]] == [
        ("token", 99),
        ("origin", 19),
    ]
    assert lines[3]["route"] == "/api/auth/refreshtoken"
    assert "origin" not in lines[3]  # a summary holds only its key's fields
