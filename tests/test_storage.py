"""The storage contract (the docstrings of storage.base.Storage), run against every
backend: users and identities, refresh tokens outcome by outcome, revocations, counters,
maintenance. Builders and fixtures are in tests/storage_kit.py."""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from dataclasses import replace

import pytest

from server.purge import purge_once
from storage import (
    Counter,
    EmailTaken,
    NewSession,
    PurgeResult,
    RefreshResult,
    Revocation,
    RevokedSession,
    RevokeReason,
    Storage,
    User,
    UsernameTaken,
)
from tests.storage_kit import (
    EXPIRED,
    REPLAYED,
    REUSE_WINDOW,
    REUSED,
    REVOKED,
    ROTATED,
    T1,
    T2,
    T3,
    UNKNOWN,
    VALID,
    by_id,
    failed,
    fullwidth,
    live_revocations,
    make_user,
    refresh,
    rotated,
    start_session,
    storage_fixture,  # noqa: F401
    table_sizes,
    tamper_user,
    token,
    user_with_session,
)

# users


async def test_create_and_get_user(storage: Storage) -> None:
    user = make_user(roles=("user", "moderator", "admin"))
    await storage.create_user(user)
    assert await storage.get_user("u1") == user
    assert await storage.get_user("u2") is None
    named = User("u2", "bob", "bob@example.com", "h", ("user",), 5, True, "Bob B.")
    await storage.create_user(named)
    assert await storage.get_user("u2") == named
    assert await storage.find_user(username="bob") == named


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


async def test_look_alike_spellings_are_one_identity(storage: Storage) -> None:
    """Issue 16.5: full-width letters, IDNA domains and decomposed accents."""
    kevin = make_user("u1", "kevin", "kevin@example.com")
    books = make_user("u2", "reader", "user@bücher.example")
    cafe = make_user("u3", "cafe", "café@example.com")
    for user in (kevin, books, cafe):
        await storage.create_user(user)
    assert await storage.find_user(username=fullwidth("kevin")) == kevin  # full-width
    assert await storage.find_user(email=f"kevin@{fullwidth('e')}xample.com") == kevin
    assert await storage.find_user(email="user@xn--bcher-kva.example") == books
    assert await storage.find_user(email="user@bu\u0308cher.example") == books
    assert await storage.find_user(email="cafe\u0301@example.com") == cafe
    clashes = [
        (fullwidth("KEVIN"), "other@example.com", UsernameTaken),
        ("kevin2", f"kevin@{fullwidth('e')}xample.com", EmailTaken),
        ("reader2", "USER@xn--bcher-kva.example", EmailTaken),
        ("reader3", "user@bu\u0308cher.example", EmailTaken),
        ("cafe2", "cafe\u0301@example.com", EmailTaken),
    ]
    for n, (username, email, error) in enumerate(clashes):
        with pytest.raises(error):
            await storage.create_user(make_user(f"x{n}", username, email))
        assert await storage.get_user(f"x{n}") is None


async def test_lookups_of_unstorable_text_find_nothing(storage: Storage) -> None:
    """NUL cannot be stored by every database; looking it up is simply not found."""
    await storage.create_user(make_user())
    assert await storage.find_user(username="ali\x00ce") is None
    assert await storage.find_user(email="alice@example.com\x00") is None
    assert await storage.get_user("u1\x00") is None
    assert await storage.delete_user("u1\x00", 10) is None
    assert await storage.change_password("u1\x00", "h", "h2", None, 10) is None
    assert await storage.update_user("u1\x00", disabled=True, now=10) is None
    assert await storage.list_sessions("u1\x00", 10) == []
    assert await storage.list_users(10, None, "al\x00") == []
    assert not await storage.revoke_user_session("u1", "s\x00", RevokeReason.SIGNOUT, 1)
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
    user = await user_with_session(storage)
    bob = make_user("u2", "bob", "bob@example.com")
    await storage.create_user(bob)
    await start_session(storage, "s2", T2)
    await start_session(storage, "s3", T3)
    await start_session(storage, "s4", token("bob"), user_id="u2")
    signed_out = await storage.revoke_session(T3, RevokeReason.SIGNOUT, 50)
    assert signed_out == RevokedSession("s3", "u1", was_live=True)

    assert await storage.change_password("u1", "hash-of-u1", "new-hash", "s1", 100) == [
        "s2"
    ]
    changed = replace(user, password_hash="new-hash")
    assert await storage.get_user("u1") == changed
    assert by_id(await live_revocations(storage, 100)) == [
        Revocation("s2", 160),
        Revocation("s3", 110),
    ]
    assert await storage.use_refresh_token(refresh(T2, token("x"), 101)) == failed(
        REVOKED, changed, "s2"
    )
    result = await storage.use_refresh_token(refresh(token("bob"), None, 101))
    assert result == RefreshResult(VALID, bob, "s4", 2000)  # another user's session
    result = await storage.use_refresh_token(refresh(T1, token("t1b"), 101))
    assert result == RefreshResult(ROTATED, changed, "s1", 2000)

    assert await storage.change_password("u1", "new-hash", "newer-hash", None, 200) == [
        "s1"
    ]
    assert (await storage.get_user("u1")) == User(
        "u1", "alice", "alice@example.com", "newer-hash", ("user",), 1_700_000_000
    )
    assert await storage.change_password("nobody", "hash", "h2", None, 200) is None


async def test_change_password_swaps_only_the_verified_hash(storage: Storage) -> None:
    """Issue 16: a change checked against a hash that is no longer the user's (another
    change came first) writes nothing: the newer hash stays, no session is revoked."""
    user = await user_with_session(storage)
    await start_session(storage, "s2", T2)
    writes = storage.write_transactions
    assert await storage.change_password("u1", "stale", "mine", "s1", 100) is None
    assert await storage.get_user("u1") == user
    assert [s.id for s in await storage.list_sessions("u1", 100)] == ["s2", "s1"]
    assert await storage.revocations_since(None, 100) == ([], 0)
    assert storage.write_transactions == writes + 1  # the attempt, rolled back


async def test_of_two_concurrent_changes_from_one_hash_one_wins(
    storage: Storage,
) -> None:
    """Both verified hash-of-u1; whichever stores first wins, the other gets None."""
    user = await user_with_session(storage)
    await start_session(storage, "s2", T2)
    results = await asyncio.gather(
        storage.change_password("u1", user.password_hash, "from-s1", "s1", 100),
        storage.change_password("u1", user.password_hash, "from-s2", "s2", 100),
    )
    winner = 0 if results[0] is not None else 1
    assert results[1 - winner] is None
    assert results[winner] == [["s2"], ["s1"]][winner]
    stored = await storage.get_user("u1")
    assert stored == replace(user, password_hash=["from-s1", "from-s2"][winner])


async def test_delete_user_revokes_its_sessions(storage: Storage) -> None:
    await user_with_session(storage)
    await start_session(storage, "s2", T2)
    await start_session(storage, "s3", T3)
    await storage.revoke_session(T3, RevokeReason.SIGNOUT, 50)

    assert sorted(await storage.delete_user("u1", 100) or []) == ["s1", "s2"]
    assert await storage.get_user("u1") is None
    assert await storage.find_user(username="alice") is None
    assert await storage.find_user(email="alice@example.com") is None
    assert await storage.delete_user("u1", 101) is None
    assert by_id(await live_revocations(storage, 100)) == [
        Revocation("s1", 160),
        Revocation("s2", 160),
        Revocation("s3", 110),
    ]
    for token_hash, sid in ((T1, "s1"), (T2, "s2")):
        result = await storage.use_refresh_token(refresh(token_hash, token("x"), 101))
        assert result == failed(REVOKED, None, sid)
    again = make_user("u9", "ALICE", "alice@example.com")  # the name is free again
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
    await rotated(storage, user, refresh(T2, T3, 105))  # the successor was presented
    for now in (100, 105, 110):  # 110: exactly reuse_interval after the retirement
        result = await storage.use_refresh_token(refresh(T1, T2, now, strict=True))
        assert result == RefreshResult(REPLAYED, user, "s1", 2000)


@pytest.mark.parametrize(
    ("interval", "retired", "presented", "outcome"),
    [
        (1, 100.0, 101.0, REPLAYED),  # exactly one second later
        (1, 100.0, 101.001, REUSED),  # one millisecond more
        (1, 100.4, 101.4, REPLAYED),  # not rounded to whole seconds
        (1, 100.4, 101.401, REUSED),
        (1, 100.999, 100.0, REPLAYED),  # a clock behind the rotation's
        (0, 100.0, 100.0, REUSED),  # 0: no grace at all, not even the same instant
        (0, 100.0, 100.5, REUSED),
    ],
)
async def test_the_reuse_interval_is_exact(
    storage: Storage, interval: int, retired: float, presented: float, outcome: object
) -> None:
    """Issue 9.3. Strict rotation, so that only the interval can allow the replay."""
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, retired))
    request = refresh(T1, T2, presented, strict=True, interval=interval)
    result = await storage.use_refresh_token(request)
    if outcome is REPLAYED:
        assert result == RefreshResult(REPLAYED, user, "s1", 2000)
    else:
        assert result == failed(REUSED, user)
        assert await live_revocations(storage, int(presented)) == [
            Revocation("s1", int(presented) + 60)
        ]


async def test_replay_after_the_interval_while_the_successor_was_never_presented(
    storage: Storage,
) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100))
    for now in (500, 1900):
        result = await storage.use_refresh_token(refresh(T1, T2, now))
        assert result == RefreshResult(REPLAYED, user, "s1", 2000)
    result = await storage.use_refresh_token(refresh(T1, T2, 1901, interval=0))
    assert result == RefreshResult(REPLAYED, user, "s1", 2000)  # not strict: still
    await rotated(storage, user, refresh(T2, T3, 1902, expires_at=4000))


async def test_reuse_once_the_successor_was_presented(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100))
    await rotated(storage, user, refresh(T2, T3, 200))
    assert await storage.use_refresh_token(refresh(T1, T2, 300)) == failed(REUSED, user)
    assert await live_revocations(storage, 300) == [Revocation("s1", 360)]
    # The whole family is revoked, and answers REUSED from now on.
    for token_hash, successor in ((T3, token("t4")), (T2, T3), (T1, T2)):
        result = await storage.use_refresh_token(refresh(token_hash, successor, 301))
        assert result == failed(REUSED, user)
    assert await live_revocations(storage, 301) == [Revocation("s1", 360)]


async def test_strict_rotation_reuse_right_after_the_interval(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100))
    result = await storage.use_refresh_token(refresh(T1, T2, 111, strict=True))
    assert result == failed(REUSED, user)
    assert await storage.use_refresh_token(refresh(T2, T3, 112)) == failed(REUSED, user)
    assert await live_revocations(storage, 112) == [Revocation("s1", 171)]


async def test_signed_out_session_answers_revoked(storage: Storage) -> None:
    user = await user_with_session(storage)
    assert await storage.revoke_session(T1, RevokeReason.SIGNOUT, 100) == (
        RevokedSession("s1", "u1", was_live=True)
    )
    for now in (101, 102):
        result = await storage.use_refresh_token(refresh(T1, T2, now))
        assert result == failed(REVOKED, user)


async def test_expired_session_is_deleted(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100, expires_at=1000))
    result = await storage.use_refresh_token(refresh(T2, T3, 1000))  # expires_at <= now
    assert result == failed(EXPIRED, user)
    for token_hash in (T2, T1):
        assert await storage.use_refresh_token(
            refresh(token_hash, T3, 1001)
        ) == RefreshResult(UNKNOWN)
    assert await storage.revoke_session(T1, RevokeReason.SIGNOUT, 1001) is None
    assert await storage.purge_expired(5000, 100) == PurgeResult(0, 0, 0)


async def test_rotation_off_answers_valid(storage: Storage) -> None:
    """A use without rotation extends the session as a rotation does."""
    user = await user_with_session(storage)
    for now in (100, 200):
        result = await storage.use_refresh_token(
            refresh(T1, None, now, expires_at=now + 1000)
        )
        assert result == RefreshResult(VALID, user, "s1", now + 1000)
    await rotated(storage, user, refresh(T1, T2, 300))  # still the current token


async def test_rotation_off_does_not_revive_a_retired_token(storage: Storage) -> None:
    """Issue 9.8: with rotation switched off a retired token is reuse, even within the
    interval and with its successor never presented."""
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100))
    assert await storage.use_refresh_token(refresh(T1, None, 101)) == failed(
        REUSED, user
    )
    assert await storage.use_refresh_token(refresh(T2, None, 102)) == failed(
        REUSED, user
    )
    assert await live_revocations(storage, 102) == [Revocation("s1", 161)]


async def test_session_of_a_deleted_user_row_is_revoked(storage: Storage) -> None:
    """delete_user revokes the sessions itself; a user row gone by other means (an
    operator's SQL) must not leave its sessions refreshing."""
    await user_with_session(storage)
    await tamper_user(storage, "u1", delete=True)
    result = await storage.use_refresh_token(refresh(T1, T2, 100))
    assert result == failed(REVOKED, None)
    assert await live_revocations(storage, 100) == [Revocation("s1", 160)]
    assert await storage.use_refresh_token(refresh(T1, T2, 130)) == failed(
        REVOKED, None
    )
    assert await live_revocations(storage, 130) == [Revocation("s1", 160)]


async def test_session_of_a_disabled_user_is_revoked(storage: Storage) -> None:
    user = await user_with_session(storage)
    await tamper_user(storage, "u1")
    disabled = replace(user, disabled=True)
    result = await storage.use_refresh_token(refresh(T1, T2, 100))
    assert result == failed(REVOKED, disabled)
    assert await live_revocations(storage, 100) == [Revocation("s1", 160)]
    assert await storage.use_refresh_token(refresh(T1, None, 101)) == failed(
        REVOKED, disabled
    )


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


async def test_every_successful_use_records_the_last_use(storage: Storage) -> None:
    user = await user_with_session(storage)

    async def last_used() -> int:
        (info,) = await storage.list_sessions("u1", 0)
        return info.last_used_at

    assert await last_used() == 0  # the sign-in
    await rotated(storage, user, refresh(T1, T2, 100.9))
    assert await last_used() == 100
    await storage.use_refresh_token(refresh(T1, T2, 105))  # replayed
    assert await last_used() == 105
    await storage.use_refresh_token(refresh(T2, None, 120))  # rotation off
    assert await last_used() == 120
    await storage.use_refresh_token(refresh(token("junk"), None, 130))
    assert await last_used() == 120


# writes: a request that changes nothing writes nothing (issue 10.1)


async def test_junk_tokens_take_no_write(storage: Storage) -> None:
    user = await user_with_session(storage)
    await start_session(storage, "s2", T2)
    await storage.revoke_session(T2, RevokeReason.SIGNOUT, 10)
    before = storage.write_transactions
    for junk, answer, signed_out in (  # unknown, and a revoked session's
        (token("junk"), RefreshResult(UNKNOWN), None),
        (T2, failed(REVOKED, user, "s2"), RevokedSession("s2", "u1", was_live=False)),
    ):
        assert await storage.use_refresh_token(refresh(junk, T3, 20)) == answer
        assert (
            await storage.revoke_session(junk, RevokeReason.SIGNOUT, 20) == signed_out
        )
    assert storage.write_transactions == before
    await rotated(storage, user, refresh(T1, T3, 30))
    assert storage.write_transactions == before + 1


# revocations


async def test_revoke_session_is_idempotent(storage: Storage) -> None:
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 10))
    live = RevokedSession("s1", "u1", was_live=True)
    assert await storage.revoke_session(T2, RevokeReason.SIGNOUT, 100) == live
    again = await storage.revoke_session(T1, RevokeReason.REUSE, 130)
    assert again == RevokedSession("s1", "u1", was_live=False)  # changes nothing
    assert await live_revocations(storage, 130) == [Revocation("s1", 160)]
    assert await storage.use_refresh_token(refresh(T2, T3, 131)) == failed(
        REVOKED, user
    )


async def test_revocations_are_kept_until_the_access_tokens_are_dead(
    storage: Storage,
) -> None:
    await user_with_session(storage)
    await start_session(storage, "s2", T2)
    await start_session(storage, "s3", T3)
    assert await live_revocations(storage, 0) == []
    await storage.revoke_session(T1, RevokeReason.SIGNOUT, 100)
    await storage.revoke_session(T2, RevokeReason.SIGNOUT, 150)
    assert by_id(await live_revocations(storage, 120)) == [
        Revocation("s1", 160),
        Revocation("s2", 210),
    ]
    assert await live_revocations(storage, 160) == [Revocation("s2", 210)]
    assert await live_revocations(storage, 210) == []


async def test_revocations_since_returns_only_new_rows(storage: Storage) -> None:
    """Issue 9.5: each poll reads what was added since the previous one."""
    await user_with_session(storage)
    for n in range(2, 6):
        await start_session(storage, f"s{n}", token(f"t{n}"))
    assert await storage.revocations_since(None, 0) == ([], 0)
    await storage.revoke_session(T1, RevokeReason.SIGNOUT, 100)
    await storage.revoke_session(token("t2"), RevokeReason.SIGNOUT, 101)
    first, cursor = await storage.revocations_since(None, 101)
    assert first == [Revocation("s1", 160), Revocation("s2", 161)]
    assert await storage.revocations_since(cursor, 101) == ([], cursor)

    await storage.revoke_session(token("t3"), RevokeReason.SIGNOUT, 102)
    later, cursor2 = await storage.revocations_since(cursor, 102)
    assert later == [Revocation("s3", 162)]
    assert (cursor, cursor2) == (2, 3)  # sequence numbers
    # Rows whose access tokens are dead by now are skipped, and passed.
    await storage.revoke_session(token("t4"), RevokeReason.SIGNOUT, 103)
    await storage.revoke_session(token("t5"), RevokeReason.SIGNOUT, 150)
    rows, cursor3 = await storage.revocations_since(cursor2, 170)
    assert rows == [Revocation("s5", 210)]
    assert await storage.revocations_since(cursor3, 170) == ([], cursor3)
    # None starts over: every live revocation, as at start-up.
    everything = [Revocation("s3", 162), Revocation("s4", 163), Revocation("s5", 210)]
    assert await storage.revocations_since(None, 161) == (everything, cursor3)


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


async def test_refund_takes_one_back_within_the_window(storage: Storage) -> None:
    """Issue 10.2: an attempt is counted before the hash and refunded on success."""
    await storage.hit_counter("k", 60, 100)
    await storage.hit_counter("k", 60, 101)
    await storage.refund_counter("k", 102)
    assert await storage.read_counter("k", 102) == Counter(1, 160)
    await storage.refund_counter("k", 103)
    await storage.refund_counter("k", 104)  # never below zero
    assert await storage.read_counter("k", 104) == Counter(0, 160)
    assert await storage.hit_counter("k", 60, 105) == Counter(1, 160)
    await storage.refund_counter("k", 160)  # the window has ended: nothing
    await storage.refund_counter("absent", 100)
    assert await storage.hit_counter("k", 60, 160) == Counter(1, 220)
    assert await storage.read_counter("absent", 100) == Counter(0, 100)


# maintenance


async def test_ping(storage: Storage) -> None:
    assert await storage.ping() is None


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
        revoked = await storage.revoke_session(token(sid), RevokeReason.SIGNOUT, 50)
        assert revoked == RevokedSession(sid, "u1", was_live=True)
    await start_session(storage, "live", T2)
    await storage.revoke_session(T1, RevokeReason.SIGNOUT, 480)
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
    assert await live_revocations(storage, 500) == [Revocation("s1", 540)]
    assert await storage.read_counter("new", 500) == Counter(1, 550)
    result = await storage.use_refresh_token(refresh(T1, T3, 500))
    assert result == failed(REVOKED, user)
    result = await storage.use_refresh_token(refresh(T2, T3, 500))
    assert result == RefreshResult(ROTATED, user, "live", 2000)


async def test_purge_deletes_tokens_retired_before_the_reuse_window(
    storage: Storage,
) -> None:
    """Issue 9.4: a retired token is kept REUSE_WINDOW seconds for reuse detection, then
    purged; presented afterwards it is unknown."""
    user = await user_with_session(storage)
    await rotated(storage, user, refresh(T1, T2, 100, expires_at=10**6))
    await rotated(storage, user, refresh(T2, T3, 200, expires_at=10**6))
    # T1 retired at 100: kept while now - 100 <= REUSE_WINDOW
    assert await storage.purge_expired(100 + REUSE_WINDOW, 10) == PurgeResult()
    assert await storage.purge_expired(101 + REUSE_WINDOW, 10) == PurgeResult(0, 1, 0)
    now = 102 + REUSE_WINDOW
    result = await storage.use_refresh_token(refresh(T1, T2, now))
    assert result == RefreshResult(UNKNOWN)
    result = await storage.use_refresh_token(refresh(T2, T3, now, strict=True))
    assert result == failed(REUSED, user)


async def test_a_long_lived_session_keeps_a_bounded_chain(storage: Storage) -> None:
    """1,000 rotations, one a second, REUSE_WINDOW (1000 s) wide: after a purge only
    the tokens retired within the window are left (and the current one)."""
    user = make_user()
    await storage.create_user(user)
    hashes = [token(f"chain{i}") for i in range(1001)]
    await start_session(storage, "long", hashes[0], expires_at=10**6)
    for i in range(1000):
        request = refresh(hashes[i], hashes[i + 1], 1000 + i, expires_at=10**6)
        await rotated(storage, user, request)
    now = 1000 + 999 + 500  # tokens retired at 1000..1498 are out of the window
    total = PurgeResult()
    while (batch := await storage.purge_expired(now, 100)) != PurgeResult():
        total += batch
    assert total == PurgeResult(sessions=0, tokens=499, other=0)
    assert (await storage.use_refresh_token(refresh(hashes[498], None, now))) == (
        RefreshResult(UNKNOWN)
    )
    last = refresh(hashes[1000], token("next"), now, expires_at=10**6)
    await rotated(storage, user, last)


async def test_a_purge_pass_deletes_until_nothing_is_left(storage: Storage) -> None:
    """Issue 9.4: one pass of purge_once, in batches of 3, deletes every expired session
    with its tokens, every token retired beyond the window and every ended counter,
    however many batches each needs (the retired tokens need more than the sessions);
    exactly the live rows are left."""
    user = make_user()
    await storage.create_user(user)
    chain = [token(f"chain{i}") for i in range(11)]
    await start_session(storage, "long", chain[0], expires_at=10**6)
    for i in range(10):  # chain[i] retired at 1000 + i
        request = refresh(chain[i], chain[i + 1], 1000 + i, expires_at=10**6)
        await rotated(storage, user, request)
    for n in range(4):
        await start_session(storage, f"e{n}", token(f"e{n}"), expires_at=100)
    for n in range(5):
        await storage.hit_counter(f"c{n}", 10, 0)
    before = {"sessions": 5, "refresh_tokens": 15, "revocations": 0, "counters": 5}
    assert await table_sizes(storage) == before

    now = 2007  # the window keeps what was retired at now - REUSE_WINDOW (1007) on
    result = await purge_once(storage, 3, now=now)
    assert result == PurgeResult(sessions=4, tokens=4 + 7, other=5)
    after = {"sessions": 1, "refresh_tokens": 4, "revocations": 0, "counters": 0}
    assert await table_sizes(storage) == after
    assert await purge_once(storage, 3, now=now) == PurgeResult()
    for i in range(7):
        result = await storage.use_refresh_token(refresh(chain[i], None, now))
        assert result == RefreshResult(UNKNOWN)
    await rotated(storage, user, refresh(chain[10], T1, now, expires_at=10**6))
    result = await storage.use_refresh_token(refresh(chain[7], T2, now))
    assert result == failed(REUSED, user, "long")  # kept: still detected as reuse


async def test_a_purge_pass_ends_while_rows_keep_arriving(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer adds a purgeable row before every batch (a clock behind the purge's):
    the pass stops after `max_batches` batches instead of running forever."""
    purge_batch = storage.purge_expired
    arrived = 0

    async def arriving(now: int, batch_size: int) -> PurgeResult:
        nonlocal arrived
        arrived += 1
        await storage.hit_counter(f"late{arrived}", 10, 0)  # ended at 10
        return await purge_batch(now, batch_size)

    storage.purge_expired = arriving  # type: ignore[method-assign]
    result = await purge_once(storage, 1, now=100, max_batches=5)
    assert (result, arrived) == (PurgeResult(other=5), 5)
    assert (await table_sizes(storage))["counters"] == 0
    assert [r.getMessage() for r in caplog.records if r.name == "auth.purge"] == [
        "purge pass stopped after 5 batches; the next pass goes on"
    ]


async def test_secret_is_created_once(storage: Storage) -> None:
    assert await storage.get_or_create_secret("hs256", b"first") == b"first"
    assert await storage.get_or_create_secret("hs256", b"second") == b"first"
    assert await storage.get_or_create_secret("other", b"\x00\xff") == b"\x00\xff"


async def test_create_session_stores_the_device(storage: Storage) -> None:
    await storage.create_user(make_user())
    session = NewSession("s1", "u1", T1, 5, 1000, "Firefox/128", "203.0.113.9")
    assert await storage.create_session(session, "hash-of-u1")
    (info,) = await storage.list_sessions("u1", 10)
    assert (info.user_agent, info.ip, info.created_at, info.last_used_at) == (
        "Firefox/128",
        "203.0.113.9",
        5,
        5,
    )
