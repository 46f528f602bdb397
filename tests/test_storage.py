"""The storage contract (the docstrings of storage.base.Storage), run against every backend.

Times are explicit integers: nothing here sleeps. Revocations are kept 60 s (the default of
open_test_storage), refresh requests allow a 10 s reuse interval unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter as Tally
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import (
    Counter,
    EmailTaken,
    NewSession,
    PurgeResult,
    RefreshOutcome,
    RefreshRequest,
    RefreshResult,
    Revocation,
    RevokeReason,
    SchemaTooNew,
    Storage,
    User,
    UsernameTaken,
    migrations,
)
from tests.backends import (
    BACKENDS,
    make_storage,
    open_test_storage,
    opened,
    postgres_schema_dsn,
)

SQL_BACKENDS = [param for param in BACKENDS if param.values[0] != "memory"]
POSTGRES_ONLY = [param for param in BACKENDS if param.values[0] == "postgres"]
TTL = 60

ROTATED = RefreshOutcome.ROTATED
REPLAYED = RefreshOutcome.REPLAYED
VALID = RefreshOutcome.VALID
UNKNOWN = RefreshOutcome.UNKNOWN
EXPIRED = RefreshOutcome.EXPIRED
REVOKED = RefreshOutcome.REVOKED
REUSED = RefreshOutcome.REUSED


@pytest.fixture(params=BACKENDS)
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Storage]:
    async with open_test_storage(request.param, tmp_path, revocation_ttl=TTL) as store:
        yield store


@pytest.fixture(params=SQL_BACKENDS)
async def sql_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, str]]:
    """(kind, location) of an empty SQL database, for tests that open several storages on
    it the way several processes would."""
    if request.param == "postgres":
        async with postgres_schema_dsn() as dsn:
            yield "postgres", dsn
    else:
        yield "sqlite", str(tmp_path / "auth.db")


# builders


def token(name: str) -> bytes:
    """A stored refresh-token hash, 32 bytes like the server's."""
    return hashlib.sha256(name.encode()).digest()


T1, T2, T3 = token("t1"), token("t2"), token("t3")


def make_user(
    user_id: str = "u1",
    username: str = "alice",
    email: str = "alice@example.com",
    roles: tuple[str, ...] = ("user",),
) -> User:
    return User(user_id, username, email, f"hash-of-{user_id}", roles, 1_700_000_000)


def refresh(
    token_hash: bytes,
    successor: bytes | None,
    now: int,
    *,
    expires_at: int = 2000,
    strict: bool = False,
) -> RefreshRequest:
    return RefreshRequest(token_hash, successor, now, expires_at, 10, strict)


async def start_session(
    storage: Storage,
    sid: str,
    token_hash: bytes,
    user_id: str = "u1",
    expires_at: int = 1000,
) -> None:
    await storage.create_session(NewSession(sid, user_id, token_hash, 0, expires_at))


async def user_with_session(storage: Storage) -> User:
    """User u1 with session s1 (current token T1, expiring at 1000)."""
    user = make_user()
    await storage.create_user(user)
    await start_session(storage, "s1", T1)
    return user


async def rotated(storage: Storage, user: User, request: RefreshRequest) -> None:
    """Rotate and check that it did: setup steps of the later tests."""
    result = await storage.use_refresh_token(request)
    assert result == RefreshResult(ROTATED, user, "s1", request.expires_at)


def failed(outcome: RefreshOutcome, session_id: str = "s1") -> RefreshResult:
    """A refused token of a known session: the session id, no user."""
    return RefreshResult(outcome, session_id=session_id)


def by_id(revocations: list[Revocation]) -> list[Revocation]:
    return sorted(revocations, key=lambda r: r.session_id)


# users


async def test_create_and_get_user(storage: Storage) -> None:
    user = make_user(roles=("user", "moderator", "admin"))
    await storage.create_user(user)
    assert await storage.get_user("u1") == user
    assert await storage.get_user("u2") is None


async def test_find_user_ignores_case(storage: Storage) -> None:
    alice = make_user()
    strasse = make_user("u2", "Straße", "Gross@Example.com")
    await storage.create_user(alice)
    await storage.create_user(strasse)
    assert await storage.find_user(username="ALICE") == alice
    assert await storage.find_user(email="ALICE@example.COM") == alice
    assert await storage.find_user(username="STRASSE") == strasse  # casefold, not lower
    assert await storage.find_user(email="gross@example.com") == strasse
    assert await storage.find_user(username="bob") is None
    assert await storage.find_user(email="bob@example.com") is None


async def test_lookups_of_unstorable_text_find_nothing(storage: Storage) -> None:
    """NUL cannot be stored by every database; looking it up is simply not found."""
    await storage.create_user(make_user())
    assert await storage.find_user(username="ali\x00ce") is None
    assert await storage.find_user(email="alice@example.com\x00") is None
    assert await storage.get_user("u1\x00") is None
    assert await storage.delete_user("u1\x00", 10) is None
    assert await storage.change_password("u1\x00", "h", None, 10) == []
    assert await storage.hit_counter("k\x00", 60, 10) == Counter(1, 70)
    assert await storage.read_counter("k\x00", 10) == Counter(1, 70)
    assert await storage.read_counter("k", 10) == Counter(0, 10)


async def test_usernames_and_emails_are_unique_without_regard_to_case(
    storage: Storage,
) -> None:
    alice = make_user()
    await storage.create_user(alice)
    with pytest.raises(UsernameTaken):
        await storage.create_user(make_user("u2", "ALICE", "other@example.com"))
    with pytest.raises(EmailTaken):
        await storage.create_user(make_user("u3", "bob", "Alice@Example.COM"))
    with pytest.raises(UsernameTaken):  # both clash: the username is reported
        await storage.create_user(make_user("u4", "Alice", "ALICE@EXAMPLE.COM"))
    for user_id in ("u2", "u3", "u4"):
        assert await storage.get_user(user_id) is None
    assert await storage.find_user(username="alice") == alice
    bob = make_user("u5", "bob", "bob@example.com")
    await storage.create_user(bob)
    assert await storage.find_user(username="BOB") == bob


async def test_change_password_revokes_the_other_live_sessions(
    storage: Storage,
) -> None:
    await user_with_session(storage)
    bob = make_user("u2", "bob", "bob@example.com")
    await storage.create_user(bob)
    await start_session(storage, "s2", T2)
    await start_session(storage, "s3", T3)
    await start_session(storage, "s4", token("bob"), user_id="u2")
    assert await storage.revoke_session(T3, RevokeReason.SIGNOUT, 50) == "s3"

    assert await storage.change_password("u1", "new-hash", "s1", 100) == ["s2"]
    changed = await storage.get_user("u1")
    assert changed is not None and changed.password_hash == "new-hash"
    assert by_id(await storage.live_revocations(100)) == [
        Revocation("s2", 160),
        Revocation("s3", 110),
    ]
    assert await storage.use_refresh_token(refresh(T2, token("x"), 101)) == failed(
        REVOKED, "s2"
    )
    result = await storage.use_refresh_token(refresh(token("bob"), None, 101))
    assert result == RefreshResult(VALID, bob, "s4", 1000)  # another user's session
    result = await storage.use_refresh_token(refresh(T1, token("t1b"), 101))
    assert result == RefreshResult(ROTATED, changed, "s1", 2000)

    assert await storage.change_password("u1", "newer-hash", None, 200) == ["s1"]
    assert (await storage.get_user("u1")) == User(
        "u1", "alice", "alice@example.com", "newer-hash", ("user",), 1_700_000_000
    )
    assert await storage.change_password("nobody", "hash", None, 200) == []


async def test_delete_user_revokes_its_sessions(storage: Storage) -> None:
    await user_with_session(storage)
    await start_session(storage, "s2", T2)
    await start_session(storage, "s3", T3)
    assert await storage.revoke_session(T3, RevokeReason.SIGNOUT, 50) == "s3"

    assert sorted(await storage.delete_user("u1", 100) or []) == ["s1", "s2"]
    assert await storage.get_user("u1") is None
    assert await storage.find_user(username="alice") is None
    assert await storage.find_user(email="alice@example.com") is None
    assert await storage.delete_user("u1", 101) is None
    assert by_id(await storage.live_revocations(100)) == [
        Revocation("s1", 160),
        Revocation("s2", 160),
        Revocation("s3", 110),
    ]
    for token_hash, sid in ((T1, "s1"), (T2, "s2")):
        result = await storage.use_refresh_token(refresh(token_hash, token("x"), 101))
        assert result == failed(REVOKED, sid)
    again = make_user(
        "u9", "ALICE", "alice@example.com"
    )  # the name and address are free
    await storage.create_user(again)
    assert await storage.find_user(username="alice") == again


# refresh tokens, outcome by outcome


async def test_unknown_token(storage: Storage) -> None:
    await user_with_session(storage)
    result = await storage.use_refresh_token(refresh(token("nope"), T2, 100))
    assert result == RefreshResult(UNKNOWN)
    assert (
        await storage.revoke_session(token("nope"), RevokeReason.SIGNOUT, 100) is None
    )


async def test_rotation_makes_the_successor_current_and_extends_the_session(
    storage: Storage,
) -> None:
    user = await user_with_session(storage)
    result = await storage.use_refresh_token(refresh(T1, T2, 100, expires_at=2000))
    assert result == RefreshResult(ROTATED, user, "s1", 2000)
    # 1500 is past the first expiry (1000): the session was extended.
    result = await storage.use_refresh_token(refresh(T2, T3, 1500, expires_at=3000))
    assert result == RefreshResult(ROTATED, user, "s1", 3000)


async def test_replay_within_the_reuse_interval(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100))
    await rotated(
        storage, user, refresh(T2, T3, 105)
    )  # even with the successor presented
    for now in (100, 105, 110):  # 110: exactly reuse_interval after the retirement
        result = await storage.use_refresh_token(refresh(T1, T2, now, strict=True))
        assert result == RefreshResult(REPLAYED, user, "s1", 2000)


async def test_replay_after_the_interval_while_the_successor_was_never_presented(
    storage: Storage,
) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100))
    for now in (500, 1900):
        result = await storage.use_refresh_token(refresh(T1, T2, now))
        assert result == RefreshResult(REPLAYED, user, "s1", 2000)
    await rotated(storage, user, refresh(T2, T3, 1901, expires_at=4000))


async def test_reuse_once_the_successor_was_presented(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100))
    await rotated(storage, user, refresh(T2, T3, 200))
    assert await storage.use_refresh_token(refresh(T1, T2, 300)) == failed(REUSED)
    assert await storage.live_revocations(300) == [Revocation("s1", 360)]
    # The whole family is revoked, and answers REUSED from now on.
    for token_hash, successor in ((T3, token("t4")), (T2, T3), (T1, T2)):
        result = await storage.use_refresh_token(refresh(token_hash, successor, 301))
        assert result == failed(REUSED)
    assert await storage.live_revocations(301) == [Revocation("s1", 360)]


async def test_strict_rotation_reuse_right_after_the_interval(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100))
    result = await storage.use_refresh_token(refresh(T1, T2, 111, strict=True))
    assert result == failed(REUSED)
    assert await storage.use_refresh_token(refresh(T2, T3, 112)) == failed(REUSED)
    assert await storage.live_revocations(112) == [Revocation("s1", 171)]


async def test_signed_out_session_answers_revoked(storage: Storage) -> None:
    await user_with_session(storage)
    assert await storage.revoke_session(T1, RevokeReason.SIGNOUT, 100) == "s1"
    for now in (101, 102):
        assert await storage.use_refresh_token(refresh(T1, T2, now)) == failed(REVOKED)


async def test_expired_session_is_deleted(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100, expires_at=1000))
    result = await storage.use_refresh_token(refresh(T2, T3, 1000))  # expires_at <= now
    assert result == failed(EXPIRED)
    for token_hash in (T2, T1):
        assert await storage.use_refresh_token(
            refresh(token_hash, T3, 1001)
        ) == RefreshResult(UNKNOWN)
    assert await storage.revoke_session(T1, RevokeReason.SIGNOUT, 1001) is None
    assert await storage.purge_expired(5000, 100) == PurgeResult(0, 0, 0)


async def test_rotation_off_answers_valid(storage: Storage) -> None:
    user = await user_with_session(storage)
    for now in (100, 200):
        result = await storage.use_refresh_token(refresh(T1, None, now))
        assert result == RefreshResult(VALID, user, "s1", 1000)
    await rotated(storage, user, refresh(T1, T2, 300))  # still the current token


async def test_session_of_a_missing_user_is_revoked(storage: Storage) -> None:
    await start_session(storage, "s1", T1, user_id="ghost")
    assert await storage.use_refresh_token(refresh(T1, T2, 100)) == failed(REVOKED)
    assert await storage.live_revocations(100) == [Revocation("s1", 160)]
    assert await storage.use_refresh_token(refresh(T1, T2, 130)) == failed(REVOKED)
    assert await storage.live_revocations(130) == [Revocation("s1", 160)]


async def test_concurrent_refreshes_of_one_token_rotate_once(storage: Storage) -> None:
    user = await user_with_session(storage)
    request = refresh(T1, T2, 100)
    results = await asyncio.gather(
        *(storage.use_refresh_token(request) for _ in range(50))
    )
    assert Tally(r.outcome for r in results) == {ROTATED: 1, REPLAYED: 49}
    assert {(r.user, r.session_id, r.expires_at) for r in results} == {
        (user, "s1", 2000)
    }
    await rotated(storage, user, refresh(T2, T3, 101, expires_at=2500))


# revocations


async def test_revoke_session_is_idempotent(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 10))
    assert await storage.revoke_session(T2, RevokeReason.SIGNOUT, 100) == "s1"
    assert (
        await storage.revoke_session(T1, RevokeReason.REUSE, 130) == "s1"
    )  # changes nothing
    assert await storage.live_revocations(130) == [Revocation("s1", 160)]
    assert await storage.use_refresh_token(refresh(T2, T3, 131)) == failed(REVOKED)


async def test_live_revocations_keep_until_the_access_tokens_are_dead(
    storage: Storage,
) -> None:
    await user_with_session(storage)
    await start_session(storage, "s2", T2)
    await start_session(storage, "s3", T3)
    assert await storage.live_revocations(0) == []
    await storage.revoke_session(T1, RevokeReason.SIGNOUT, 100)
    await storage.revoke_session(T2, RevokeReason.SIGNOUT, 150)
    assert by_id(await storage.live_revocations(120)) == [
        Revocation("s1", 160),
        Revocation("s2", 210),
    ]
    assert await storage.live_revocations(160) == [Revocation("s2", 210)]
    assert await storage.live_revocations(210) == []


# counters


async def test_counters_count_within_a_fixed_window(storage: Storage) -> None:
    assert await storage.read_counter("ip:1", 100) == Counter(0, 100)
    assert await storage.hit_counter("ip:1", 60, 100) == Counter(1, 160)
    assert await storage.hit_counter("ip:1", 60, 120) == Counter(2, 160)
    assert await storage.hit_counter("ip:2", 30, 120) == Counter(1, 150)
    assert await storage.read_counter("ip:1", 159) == Counter(2, 160)
    assert await storage.read_counter("ip:1", 160) == Counter(0, 160)
    assert await storage.hit_counter("ip:1", 60, 160) == Counter(1, 220)  # a new window
    await storage.delete_counter("ip:1")
    await storage.delete_counter("never-hit")
    assert await storage.read_counter("ip:1", 161) == Counter(0, 161)
    assert await storage.hit_counter("ip:1", 60, 162) == Counter(1, 222)
    assert await storage.read_counter("ip:2", 149) == Counter(1, 150)
    assert await storage.read_counter("ip:2", 161) == Counter(0, 161)


async def test_counters_are_independent(storage: Storage) -> None:
    await storage.hit_counter("a", 60, 100)
    await storage.hit_counter("a", 60, 101)
    await storage.hit_counter("b", 30, 102)
    await storage.delete_counter("b")
    assert await storage.read_counter("a", 102) == Counter(2, 160)
    assert await storage.read_counter("b", 102) == Counter(0, 102)


# maintenance


async def test_purge_deletes_in_batches(storage: Storage) -> None:
    user = await user_with_session(storage)
    expired = [f"e{i}" for i in range(1, 6)]
    for sid in expired:  # each expired session has two tokens
        await start_session(storage, sid, token(sid), expires_at=100)
        result = await storage.use_refresh_token(
            refresh(token(sid), token(sid + "b"), 10, expires_at=100)
        )
        assert result == RefreshResult(ROTATED, user, sid, 100)
    for sid in expired[:3]:
        assert await storage.revoke_session(token(sid), RevokeReason.SIGNOUT, 50) == sid
    await start_session(storage, "live", T2)
    assert await storage.revoke_session(T1, RevokeReason.SIGNOUT, 480) == "s1"
    await storage.hit_counter("old", 10, 0)
    await storage.hit_counter("new", 60, 490)

    results = [await storage.purge_expired(500, 2) for _ in range(4)]
    assert results == [
        PurgeResult(sessions=2, tokens=4, other=3),  # 2 revocations + 1 counter
        PurgeResult(sessions=2, tokens=4, other=1),
        PurgeResult(sessions=1, tokens=2, other=0),
        PurgeResult(),
    ]
    for sid in expired:
        for token_hash in (token(sid), token(sid + "b")):
            result = await storage.use_refresh_token(refresh(token_hash, T3, 500))
            assert result == RefreshResult(UNKNOWN)
    assert await storage.live_revocations(500) == [Revocation("s1", 540)]
    assert await storage.read_counter("new", 500) == Counter(1, 550)
    assert await storage.use_refresh_token(refresh(T1, T3, 500)) == failed(REVOKED)
    result = await storage.use_refresh_token(refresh(T2, T3, 500))
    assert result == RefreshResult(ROTATED, user, "live", 2000)


async def test_secret_is_created_once(storage: Storage) -> None:
    assert await storage.get_or_create_secret("hs256", b"first") == b"first"
    assert await storage.get_or_create_secret("hs256", b"second") == b"first"
    assert await storage.get_or_create_secret("other", b"\x00\xff") == b"\x00\xff"


# several processes on one SQL database


async def test_concurrent_refreshes_from_two_processes_rotate_once(
    sql_database: tuple[str, str],
) -> None:
    kind, location = sql_database
    async with (
        opened(make_storage(kind, location)) as one,
        opened(make_storage(kind, location)) as two,
    ):
        user = await user_with_session(one)
        request = refresh(T1, T2, 100)
        calls = [
            store.use_refresh_token(request) for _ in range(25) for store in (one, two)
        ]
        results = await asyncio.gather(*calls)
        assert Tally(r.outcome for r in results) == {ROTATED: 1, REPLAYED: 49}
        assert {(r.user, r.session_id, r.expires_at) for r in results} == {
            (user, "s1", 2000)
        }
        await rotated(two, user, refresh(T2, T3, 101))


async def test_purges_from_two_processes_share_the_work(
    sql_database: tuple[str, str],
) -> None:
    kind, location = sql_database
    async with (
        opened(make_storage(kind, location)) as one,
        opened(make_storage(kind, location)) as two,
    ):
        user = make_user()
        await one.create_user(user)
        for i in range(6):
            await start_session(one, f"e{i}", token(f"e{i}"), expires_at=100)
        await start_session(one, "live", T1)
        first, second = await asyncio.gather(
            one.purge_expired(500, 10), two.purge_expired(500, 10)
        )
        assert first + second == PurgeResult(sessions=6, tokens=6, other=0)
        assert await two.purge_expired(500, 10) == PurgeResult()
        result = await two.use_refresh_token(refresh(T1, None, 500))
        assert result == RefreshResult(VALID, user, "live", 1000)


async def test_secret_is_shared_by_processes(sql_database: tuple[str, str]) -> None:
    kind, location = sql_database
    async with (
        opened(make_storage(kind, location)) as one,
        opened(make_storage(kind, location)) as two,
    ):
        first, second = await asyncio.gather(
            one.get_or_create_secret("hs256", b"one"),
            two.get_or_create_secret("hs256", b"two"),
        )
        assert first == second and first in (b"one", b"two")
        assert await one.get_or_create_secret("hs256", b"three") == first


# schema versions


async def schema_versions(store: Storage) -> list[int]:
    return [
        row[0]
        for row in await run_sql(
            store, "SELECT version FROM schema_version ORDER BY version"
        )
    ]


async def run_sql(store: Storage, sql: str) -> list[tuple]:
    """Raw SQL on a SQL backend's own connection, for what the interface does not expose."""
    from storage.sqlite import SQLiteStorage

    if isinstance(store, SQLiteStorage):
        return [tuple(row) for row in await store.db.execute_fetchall(sql)]
    from storage.postgres import PostgresStorage

    assert isinstance(store, PostgresStorage)
    return [tuple(row) for row in await store.pool.fetch(sql)]


async def test_reopening_keeps_the_data(sql_database: tuple[str, str]) -> None:
    kind, location = sql_database
    user = make_user()
    async with opened(make_storage(kind, location)) as store:
        await store.create_user(user)
    async with opened(make_storage(kind, location)) as store:
        assert await store.get_user("u1") == user
        assert await schema_versions(store) == list(range(1, migrations.LATEST + 1))


async def test_processes_starting_together_migrate_once(
    sql_database: tuple[str, str],
) -> None:
    kind, location = sql_database
    stores = [make_storage(kind, location) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        assert await schema_versions(stores[0]) == list(range(1, migrations.LATEST + 1))
        await stores[0].create_user(make_user())
        assert await stores[3].find_user(username="alice") == make_user()
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(sql_database: tuple[str, str]) -> None:
    kind, location = sql_database
    newer = migrations.LATEST + 1
    async with opened(make_storage(kind, location)) as store:
        await run_sql(store, f"INSERT INTO schema_version VALUES ({newer})")
    with pytest.raises(SchemaTooNew) as caught:
        async with opened(make_storage(kind, location)):
            pass
    assert str(caught.value) == migrations.too_new_message(newer)


@pytest.mark.parametrize("kind", POSTGRES_ONLY)
async def test_postgres_works_inside_the_schema_of_its_dsn(kind: str) -> None:
    async with postgres_schema_dsn() as dsn, opened(make_storage(kind, dsn)) as store:
        schema = dsn.rpartition("search_path=")[2]
        await store.create_user(make_user())
        # more connections than one, each reset by the pool, all keep the search path
        found = await asyncio.gather(
            *(store.find_user(username="alice") for _ in range(20))
        )
        assert found == [make_user()] * 20
        rows = await run_sql(
            store,
            "SELECT table_name FROM information_schema.tables "
            f"WHERE table_schema = '{schema}' ORDER BY table_name",
        )
        assert [row[0] for row in rows] == [
            "counters",
            "refresh_tokens",
            "revocations",
            "schema_version",
            "secrets",
            "sessions",
            "users",
        ]
        assert await run_sql(store, "SELECT current_schema()") == [(schema,)]
