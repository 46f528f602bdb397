"""The storage contract, continued: a user's devices (sessions), user administration
(listing, roles, disabling, the last admin) and sign-ins racing account changes; on
every backend."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from storage import (
    LastAdmin,
    NewSession,
    RefreshResult,
    Revocation,
    RevokeReason,
    SessionInfo,
    Storage,
    User,
    UserUpdate,
)
from tests.storage_kit import (
    CREATED,
    REVOKED,
    T1,
    T2,
    T3,
    UNKNOWN,
    VALID,
    by_id,
    failed,
    live_revocations,
    make_user,
    refresh,
    start_session,
    storage_fixture,  # noqa: F401
    token,
    user_with_session,
)

ADMIN_ROLES = ("user", "admin")

# sign-ins racing account changes (issue 16.1, 16.2)


async def test_create_session_needs_the_verified_password_hash(
    storage: Storage,
) -> None:
    await storage.create_user(make_user())
    stale = NewSession("s1", "u1", T1, 0, 1000)
    assert await storage.change_password("u1", "hash-of-u1", "new-hash", None, 5) == []
    before = await storage.list_sessions("u1", 10)
    assert not await storage.create_session(stale, "hash-of-u1")  # verified the old one
    assert await storage.list_sessions("u1", 10) == before == []
    assert await storage.use_refresh_token(refresh(T1, T2, 10)) == RefreshResult(
        UNKNOWN
    )
    assert await storage.create_session(stale, "new-hash")


async def test_create_session_refused_for_a_deleted_or_disabled_user(
    storage: Storage,
) -> None:
    await storage.create_user(make_user())
    await storage.create_user(make_user("u2", "bob", "bob@example.com"))
    await storage.create_user(make_user("u3", "carol", "carol@example.com"))
    await storage.delete_user("u1", 5)
    await storage.update_user("u2", disabled=True, now=5)
    for user_id, token_hash in (("u1", T1), ("u2", T2), ("ghost", T3)):
        session = NewSession(f"s-{user_id}", user_id, token_hash, 0, 1000)
        assert not await storage.create_session(session, f"hash-of-{user_id}")
        result = await storage.use_refresh_token(refresh(token_hash, None, 10))
        assert result == RefreshResult(UNKNOWN)
    await storage.update_user("u2", disabled=False, now=6)
    await start_session(storage, "s2", T2, user_id="u2")
    await start_session(storage, "s3", T3, user_id="u3")


# a user's devices


async def test_list_sessions_newest_first_with_devices(storage: Storage) -> None:
    await storage.create_user(make_user())
    await storage.create_user(make_user("u2", "bob", "bob@example.com"))
    await start_session(storage, "a", token("a"), created_at=10, device=("UA-a", "::1"))
    await start_session(storage, "c", token("c"), created_at=20)
    await start_session(storage, "b", token("b"), created_at=20, expires_at=50)
    await start_session(storage, "d", token("d"), created_at=5)
    await start_session(storage, "e", token("e"), created_at=30, user_id="u2")
    await storage.revoke_session(token("d"), RevokeReason.SIGNOUT, 40)
    sessions = await storage.list_sessions("u1", 40)
    assert sessions == [
        SessionInfo("c", "u1", 20, 20, 1000, None, None),
        SessionInfo("b", "u1", 20, 20, 50, None, None),  # same second: id descending
        SessionInfo("a", "u1", 10, 10, 1000, "UA-a", "::1"),
    ]
    assert [s.id for s in await storage.list_sessions("u1", 50)] == ["c", "a"]
    assert await storage.list_sessions("nobody", 40) == []


async def test_revoke_one_session_of_the_user(storage: Storage) -> None:
    user = await user_with_session(storage)
    await storage.create_user(make_user("u2", "bob", "bob@example.com"))
    await start_session(storage, "s2", T2)
    await start_session(storage, "bob", T3, user_id="u2")
    await start_session(storage, "old", token("old"), expires_at=50)
    reason = RevokeReason.SESSION_REVOKED
    assert not await storage.revoke_user_session("u1", "bob", reason, 60)  # another's
    assert not await storage.revoke_user_session("u1", "nope", reason, 60)
    assert not await storage.revoke_user_session("u1", "old", reason, 60)  # expired
    assert await storage.revoke_user_session("u1", "s2", reason, 60)
    assert not await storage.revoke_user_session("u1", "s2", reason, 61)  # not live
    assert await live_revocations(storage, 61) == [Revocation("s2", 120)]
    assert await storage.use_refresh_token(refresh(T2, None, 62)) == failed(
        REVOKED, user, "s2"
    )
    assert [s.id for s in await storage.list_sessions("u1", 62)] == ["s1"]
    bob = await storage.use_refresh_token(refresh(T3, None, 62))
    assert bob.outcome is VALID


async def test_revoke_the_other_sessions(storage: Storage) -> None:
    await user_with_session(storage)
    await storage.create_user(make_user("u2", "bob", "bob@example.com"))
    await start_session(storage, "s2", T2)
    await start_session(storage, "s3", T3)
    await start_session(storage, "bob", token("bob"), user_id="u2")
    await storage.revoke_session(T3, RevokeReason.SIGNOUT, 10)
    reason = RevokeReason.OTHERS_REVOKED
    assert await storage.revoke_other_sessions("u1", "s1", reason, 20) == ["s2"]
    assert await storage.revoke_other_sessions("u1", "s1", reason, 21) == []
    assert [s.id for s in await storage.list_sessions("u1", 22)] == ["s1"]
    assert [s.id for s in await storage.list_sessions("u2", 22)] == ["bob"]
    assert await storage.revoke_other_sessions("u1", None, reason, 23) == ["s1"]
    assert by_id(await live_revocations(storage, 23)) == [
        Revocation("s1", 83),
        Revocation("s2", 80),
        Revocation("s3", 70),
    ]


# listing users


def numbered(n: int) -> User:
    """User n, three to a second: ties of created_at are ordered by id."""
    name = f"user{n:03d}"
    return make_user(
        f"id{n:03d}", name, f"{name}@example.com", created_at=CREATED + n // 3
    )


async def all_pages(
    storage: Storage, limit: int, query: str | None = None
) -> list[str]:
    ids: list[str] = []
    after = None
    while page := await storage.list_users(limit, after, query):
        ids += [u.id for u in page]
        after = (page[-1].created_at, page[-1].id)
    return ids


async def test_list_users_in_pages(storage: Storage) -> None:
    users = [numbered(n) for n in range(10)]
    for user in reversed(users):
        await storage.create_user(user)
    first = await storage.list_users(4, None, None)
    assert first == users[:4]
    second = await storage.list_users(4, (first[-1].created_at, first[-1].id), None)
    assert second == users[4:8]
    assert await all_pages(storage, 3) == [u.id for u in users]
    assert await storage.list_users(5, (CREATED + 100, ""), None) == []
    assert await storage.list_users(0, None, None) == []


async def test_list_users_search(storage: Storage) -> None:
    users = [
        make_user("a", "Alice", "alice@example.com"),
        make_user("b", "bob_smith", "bob@Corp.example"),
        make_user("c", "bobXsmith", "c@example.org"),
        make_user("d", "dave", "d%50@example.com"),
        make_user("e", "Straße", "e\\f@example.com"),
    ]
    for user in users:
        await storage.create_user(user)

    async def found(query: str) -> list[str]:
        return [u.id for u in await storage.list_users(10, None, query)]

    assert await found("ALI") == ["a"]
    assert await found("corp.EXAMPLE") == ["b"]
    assert await found("example") == ["a", "b", "c", "d", "e"]
    assert await found("b_s") == ["b"]  # "_" is a literal, not any character
    assert await found("%") == ["d"]
    assert await found("\\") == ["e"]
    assert await found("STRASSE") == ["e"]
    assert await found("nobody") == []
    assert await all_pages(storage, 1, "bob") == ["b", "c"]


async def test_pagination_visits_every_user_once_during_sign_ups(
    storage: Storage,
) -> None:
    """Keyset pages ordered by (created_at, id), with users signing up between pages,
    concurrently with each other: in the page boundary's second before the boundary
    (never listed: already passed), in that second after it, and in a later second
    (both listed). Every user that existed throughout is listed exactly once, in
    order. Positions are chosen, not left to timing or to the clock."""
    for n in range(0, 30, 2):  # 15 users, id000 to id028, 3 to a second
        await storage.create_user(numbered(n))
    seen: list[str] = []
    after: tuple[int, str] | None = None
    pages = 0
    while page := await storage.list_users(4, after, None):
        seen += [u.id for u in page]
        after = (page[-1].created_at, page[-1].id)
        pages += 1
        if pages <= 3:
            second, boundary = after
            await asyncio.gather(
                *(
                    storage.create_user(
                        make_user(i, i, f"{i}@example.com", created_at=t)
                    )
                    for i, t in (
                        (f"a{pages}", second),  # before the boundary: passed
                        (f"{boundary}z", second),  # same second, after it
                        (f"late{pages}", CREATED + 100),
                    )
                )
            )
    assert seen == [
        *("id000", "id002", "id004", "id006"),  # a1 signs up before id006
        *("id006z", "id008", "id010", "id012"),  # a2 before id012
        *("id012z", "id014", "id016", "id018"),  # a3 before id018
        *("id018z", "id020", "id022", "id024"),
        *("id026", "id028", "late1", "late2"),
        "late3",
    ]
    everyone = [u.id for u in await storage.list_users(100, None, None)]
    assert sorted(everyone) == sorted([*seen, "a1", "a2", "a3"])


# administering users


async def test_update_roles_and_disabled(storage: Storage) -> None:
    await storage.create_user(
        make_user("root", "root", "root@example.com", ADMIN_ROLES)
    )
    user = await user_with_session(storage)
    await start_session(storage, "s2", T2)
    promoted = replace(user, roles=("user", "moderator"))
    result = await storage.update_user("u1", roles=promoted.roles, now=10)
    assert result == UserUpdate(promoted, [])  # a role given revokes nothing
    assert await storage.get_user("u1") == promoted

    demoted = await storage.update_user("u1", roles=("user",), now=20)
    assert demoted is not None and demoted.user == user
    assert sorted(demoted.revoked) == ["s1", "s2"]
    assert by_id(await live_revocations(storage, 20)) == [
        Revocation("s1", 80),
        Revocation("s2", 80),
    ]
    assert await storage.use_refresh_token(refresh(T1, None, 21)) == failed(
        REVOKED, user
    )

    await start_session(storage, "s3", T3)
    disabled = await storage.update_user("u1", disabled=True, now=30)
    assert disabled == UserUpdate(replace(user, disabled=True), ["s3"])
    assert await storage.find_user(username="alice") == disabled.user
    again = await storage.update_user("u1", disabled=True, now=31)
    assert again == UserUpdate(replace(user, disabled=True), [])
    enabled = await storage.update_user("u1", disabled=False, now=40)
    assert enabled == UserUpdate(user, [])
    assert await storage.update_user("nobody", disabled=True, now=40) is None
    assert await storage.update_user("u1", now=41) == UserUpdate(user, [])


async def test_the_last_enabled_admin_stays(storage: Storage) -> None:
    root = make_user("root", "root", "root@example.com", ADMIN_ROLES)
    await storage.create_user(root)
    await storage.create_user(make_user("u1", roles=ADMIN_ROLES))
    await storage.create_user(make_user("u2", "bob", "bob@example.com"))
    await storage.update_user("u1", disabled=True, now=1)  # a disabled admin: no count
    for change in ({"roles": ("user",)}, {"disabled": True}):
        with pytest.raises(LastAdmin, match=r"^The last admin cannot be removed\.$"):
            await storage.update_user("root", now=2, **change)  # type: ignore[arg-type]
    with pytest.raises(LastAdmin):
        await storage.delete_user("root", 2)
    assert await storage.get_user("root") == root
    # unrelated changes of the last admin, and of other users, pass
    more = await storage.update_user(
        "root", roles=("user", "moderator", "admin"), now=3
    )
    assert more == UserUpdate(replace(root, roles=("user", "moderator", "admin")), [])
    assert await storage.delete_user("u2", 3) == []
    assert await storage.delete_user("u1", 3) == []
    # with a second enabled admin, one of them may go
    await storage.create_user(make_user("u3", "carol", "c@example.com", ADMIN_ROLES))
    assert await storage.delete_user("root", 4) == []
    with pytest.raises(LastAdmin):
        await storage.update_user("u3", roles=("user",), now=5)


async def test_concurrent_demotions_leave_an_admin(storage: Storage) -> None:
    """Two admins demoting each other at once: exactly one change passes."""
    for n in (1, 2):
        await storage.create_user(
            make_user(f"a{n}", f"admin{n}", f"a{n}@example.com", ADMIN_ROLES)
        )
    results = await asyncio.gather(
        storage.update_user("a1", roles=("user",), now=1),
        storage.delete_user("a2", 1),
        return_exceptions=True,
    )
    assert sum(isinstance(r, LastAdmin) for r in results) == 1
    remaining = [
        u for u in await storage.list_users(10, None, None) if "admin" in u.roles
    ]
    assert len(remaining) == 1
