"""Generated signing keys: kept in the data folder, rotated by command or on schedule,
picked up by a running server, retired keys verifying until their tokens expired."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from server import clock, keyfile, keys, keywatch, signing_keys
from server.keyfile import LOCK_FILE_NAME, KeyFileError
from server.keywatch import KeyWatcher
from server.settings import Settings
from server.signing_keys import (
    KeyRing,
    KeyRotationError,
    load_key_ring,
    new_record,
    rotate,
)
from server.tokens import AccessTokens, UnknownKeyId
from storage import User
from tests.conftest import MakeApi, make_admin_token, make_settings
from tests.serverproc import run_cli, server_env

GENERATED = {"secret": ""}


@pytest.mark.parametrize("algorithm", ["HS256", "RS256", "ES256", "EdDSA"])
def test_first_use_generates_a_private_key_file(tmp_path: Path, algorithm: str) -> None:
    settings = make_settings(tmp_path, tokens={"secret": "", "algorithm": algorithm})
    ring = load_key_ring(settings, now=1000)
    path = tmp_path / "data" / signing_keys.KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_ring(settings, now=1001).current.kid == ring.current.kid
    keys = ring.jwks()["keys"]
    if algorithm == "HS256":
        assert keys == []
    else:
        assert [k["kid"] for k in keys] == [ring.current.kid]
        assert not {"d", "p", "q", "k"} & set(keys[0])


def test_rotation_retires_keys_after_their_tokens_expired(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, tokens={"secret": "", "algorithm": "ES256"})
    first = load_key_ring(settings, now=1000)
    window = settings.tokens.access_ttl + settings.tokens.expiry_leeway
    second = rotate(settings, now=2000)
    assert second.current.kid != first.current.kid
    assert set(second.verifying) == {first.current.kid, second.current.kid}
    assert len(second.jwks()["keys"]) == 2
    later = load_key_ring(settings, now=2000 + window)
    assert set(later.verifying) == {second.current.kid}
    assert [k["kid"] for k in later.jwks()["keys"]] == [second.current.kid]


def test_scheduled_rotation_only_when_the_key_is_old_enough(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, tokens={"secret": "", "key_rotation_days": 1})
    first = load_key_ring(settings, now=1000)
    assert (
        rotate(settings, now=1000 + 86399, max_age=86400).current.kid
        == first.current.kid
    )
    assert (
        rotate(settings, now=1000 + 86400, max_age=86400).current.kid
        != first.current.kid
    )


def test_changing_the_algorithm_makes_a_new_key(tmp_path: Path) -> None:
    hs = load_key_ring(make_settings(tmp_path, tokens=GENERATED), now=1000)
    settings = make_settings(tmp_path, tokens={"secret": "", "algorithm": "EdDSA"})
    ed = load_key_ring(settings, now=1001)
    assert (ed.current.algorithm, hs.current.algorithm) == ("EdDSA", "HS256")
    records = json.loads((tmp_path / "data" / signing_keys.KEY_FILE_NAME).read_text())
    assert [r["algorithm"] for r in records["keys"]] == ["HS256", "EdDSA"]


def test_configured_keys_are_not_rotated(tmp_path: Path) -> None:
    with pytest.raises(
        KeyRotationError, match=r"tokens\.secret or tokens\.private_key_file"
    ):
        rotate(make_settings(tmp_path))


async def test_a_running_server_picks_up_a_rotated_key(
    make_api: MakeApi, tmp_path: Path
) -> None:
    api = await make_api(tokens={**GENERATED, "key_reload_interval": 0.05})
    old = (await api.user("alice"))["accessToken"]
    rotated = rotate(
        make_settings(tmp_path, tokens=GENERATED)
    )  # as `run.py rotate-key`
    await asyncio.sleep(0.3)
    new = (await (await api.signin("alice")).json())["accessToken"]
    assert jwt.get_unverified_header(new)["kid"] == rotated.current.kid
    assert jwt.get_unverified_header(old)["kid"] != rotated.current.kid
    for token in (old, new):
        assert (await api.get("/api/test/user", token)).status == 200


# Two phases: a new key is published first and signs later, at one instant for all.


def rotation_settings(tmp_path: Path, **tokens: Any) -> Settings:
    return make_settings(
        tmp_path, tokens={"secret": "", "algorithm": "EdDSA", **tokens}
    )


def kids(ring: KeyRing) -> set[str]:
    return {key["kid"] for key in ring.jwks()["keys"]}


def test_with_a_server_running_a_new_key_is_published_before_it_signs(
    tmp_path: Path,
) -> None:
    settings = rotation_settings(tmp_path)
    old = load_key_ring(settings, now=1000).current.kid
    presence = signing_keys.announce_presence(settings)  # as `run.py` holds it
    try:
        ring = rotate(settings, now=2000)
    finally:
        presence.close()
    delay = signing_keys.publish_delay(settings.tokens)
    assert delay == 2 * 10 + 20 + 1  # reload twice, JWKS cache, whole seconds
    assert ring.pending is not None
    new, starts = ring.pending
    assert starts == 2000 + delay
    assert ring.signer(2000).kid == old
    assert kids(ring) == {old, new.kid}
    # Read at any time before the switch, every instance switches at the same second.
    for read_at in (2000, 2000 + delay - 1):
        later = load_key_ring(settings, now=read_at)
        assert later.signer(starts - 1).kid == old
        assert later.signer(starts).kid == new.kid
    assert load_key_ring(settings, now=starts).current.kid == new.kid
    # The old key verifies until the last token it signed has expired.
    window = settings.tokens.revocation_ttl
    assert old in load_key_ring(settings, now=starts + window - 1).verifying
    assert old not in load_key_ring(settings, now=starts + window).verifying


def test_with_no_server_running_rotate_key_switches_at_once(tmp_path: Path) -> None:
    settings = rotation_settings(tmp_path)
    old = load_key_ring(settings, now=1000).current.kid
    ring = rotate(settings, now=2000)
    assert ring.pending is None
    assert ring.signer(2000).kid != old
    assert kids(ring) == {old, ring.signer(2000).kid}


def test_a_second_rotation_replaces_a_key_that_never_signed(tmp_path: Path) -> None:
    settings = rotation_settings(tmp_path)
    old = load_key_ring(settings, now=1000).current.kid
    first = rotate(settings, now=2000, delay=41).pending
    second = rotate(settings, now=2010, delay=41).pending
    assert first is not None and second is not None
    assert second[1] == 2051
    records = load_key_ring(settings, now=2010).records
    assert [r.kid for r in records] == [old, second[0].kid]
    assert records[0].retired_at == 2051


def test_the_schedule_publishes_one_key_however_many_processes_ask(
    tmp_path: Path,
) -> None:
    settings = rotation_settings(tmp_path, key_rotation_days=1)
    old = load_key_ring(settings, now=1000).current.kid
    assert rotate(settings, now=1000 + 86399, max_age=86400, delay=41).pending is None
    pending = [
        rotate(settings, now=1000 + 86400 + n, max_age=86400, delay=41).pending
        for n in range(3)
    ]
    assert len({p[0].kid for p in pending if p}) == 1
    assert pending[0] is not None and pending[0][1] == 1000 + 86400 + 41
    assert len(load_key_ring(settings, now=87400).records) == 2
    assert load_key_ring(settings, now=87400).current.kid == old


def test_a_key_file_from_before_two_phase_rotation_still_loads(tmp_path: Path) -> None:
    settings = rotation_settings(tmp_path)
    records = [new_record("EdDSA", 1000), new_record("EdDSA", 1500)]
    legacy = [
        {**records[0].to_json(), "retired_at": 1500},
        {**records[1].to_json(), "retired_at": None},
    ]
    for item in legacy:
        del item["active_from"]
    key_path(tmp_path).parent.mkdir(mode=0o700)
    write_private(key_path(tmp_path), json.dumps({"keys": legacy}).encode())
    ring = load_key_ring(settings, now=1600)
    assert ring.current.kid == records[1].kid
    assert set(ring.verifying) == {records[0].kid, records[1].kid}


# The key watcher: reloads on a timer, on an unknown kid (throttled), and the schedule.


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in 10 s")


ALICE = User("alice-id", "alice", "alice@example.com", "x", ("user",), 0)


async def test_an_unknown_kid_is_verified_after_one_shared_throttled_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gap = 0.2
    monkeypatch.setattr(keywatch, "UNKNOWN_KID_GAP", gap)
    settings = rotation_settings(tmp_path, key_reload_interval=3600)
    tokens = AccessTokens(settings.tokens, load_key_ring(settings))
    watcher = KeyWatcher(settings, tokens)
    task = asyncio.ensure_future(watcher.run())
    try:
        await eventually(lambda: watcher.reloads == 1)
        # Another instance signs with a key this process has not read yet.
        elsewhere = AccessTokens(settings.tokens, rotate(settings, delay=0))
        token = elsewhere.issue(ALICE, "sid-1")
        with pytest.raises(UnknownKeyId):
            tokens.verify(token)
        claims = await asyncio.gather(*(tokens.verify_async(token) for _ in range(20)))
        assert {c.user_id for c in claims} == {"alice-id"}
        assert watcher.reloads == 2  # twenty callers, one read of the file
        # Forged kids: refused, and they cannot make the file be read in a loop.
        forged = jwt.encode({"sub": "x"}, "k" * 32, "HS256", headers={"kid": "nope"})
        started = watcher._last_start
        for _ in range(3):
            results = await asyncio.gather(
                *(tokens.verify_async(forged) for _ in range(10)),
                return_exceptions=True,
            )
            assert all(isinstance(r, UnknownKeyId) for r in results)
        assert watcher.reloads == 5  # one per wave of ten
        assert watcher._last_start - started >= 3 * gap
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert tokens.reload_hook is None


@pytest.mark.parametrize("backend", ["memory"])
async def test_the_schedule_publishes_ahead_and_switches_on_time(
    make_api: MakeApi,
) -> None:
    api = await make_api(
        tokens={**GENERATED, "key_rotation_days": 1, "key_reload_interval": 0.05}
    )
    tokens = api.app[keys.AUTH].access_tokens
    first = jwt.get_unverified_header((await api.user("alice"))["accessToken"])["kid"]
    clock.advance(86400)
    await eventually(lambda: tokens.ring.pending is not None)
    assert tokens.ring.pending is not None
    new, starts = tokens.ring.pending
    jwks = await (await api.get("/.well-known/jwks.json")).json()
    assert jwks == {"keys": []}  # HS256: secrets are never published
    assert set(tokens.ring.verifying) == {first, new.kid}
    before = await (await api.signin("alice")).json()
    assert jwt.get_unverified_header(before["accessToken"])["kid"] == first
    clock.advance(starts - clock.epoch())
    after = await (await api.signin("alice")).json()
    assert jwt.get_unverified_header(after["accessToken"])["kid"] == new.kid
    # (pyjwt checks `iat` against the real time, which this test left a day behind:
    # tokens verifying across the switch are shown with real processes in
    # test_key_rotation.py.)
    assert set(tokens.ring.verifying) == {first, new.kid}


async def test_the_jwks_is_cached_for_jwks_max_age(make_api: MakeApi) -> None:
    api = await make_api(tokens={"jwks_max_age": 7})
    response = await api.get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == "public, max-age=7"


# The key file: refused when unusable or writable by others, written safely.

FIX = (
    "restore it from a backup, or delete it to generate a new key (tokens signed with "
    "the old keys will then be refused)"
)


def key_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / signing_keys.KEY_FILE_NAME


def write_private(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    path.chmod(0o600)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b" \n", "the file is empty"),
        (b"\xff\xfe{}", "the file is not UTF-8 text"),
        (b'{"keys": [', "not valid JSON (Expecting value)"),
        (b"[1, 2]", 'expected {"keys": [...]} with at least one key'),
        (b'{"keys": []}', 'expected {"keys": [...]} with at least one key'),
        (b'{"keys": [7]}', "key 1 is not an object"),
        (
            b'{"keys": [{"kid": "a", "algorithm": "HS256"}]}',
            "key 1 must have the fields kid, algorithm, material, created_at (and may "
            "have retired_at, active_from), no others",
        ),
        (
            b'{"keys": [{"kid": "a", "algorithm": "HS256", "material": "eA", '
            b'"created_at": "yesterday"}]}',
            "key 1 has a field of the wrong type or value",
        ),
        (
            b'{"keys": [{"kid": "a", "algorithm": "none", "material": "eA", '
            b'"created_at": 1}]}',
            "key 1 has a field of the wrong type or value",
        ),
        (
            b'{"keys": [{"kid": "a", "algorithm": "RS256", "material": "not a pem", '
            b'"created_at": 1}]}',
            "key 1 cannot be loaded",
        ),
    ],
)
def test_an_unusable_key_file_is_refused_in_one_line(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    settings = rotation_settings(tmp_path)
    path = key_path(tmp_path)
    path.parent.mkdir(mode=0o700)
    write_private(path, content)
    with pytest.raises(KeyFileError) as refused:
        load_key_ring(settings)
    assert (
        str(refused.value)
        == f"the signing key file {path} is unusable: {reason}; {FIX}"
    )
    assert path.read_bytes() == content  # never "repaired" by overwriting


def test_a_key_file_writable_by_others_is_refused(tmp_path: Path) -> None:
    settings = rotation_settings(tmp_path)
    load_key_ring(settings)
    path = key_path(tmp_path)
    path.chmod(0o666)
    with pytest.raises(KeyFileError) as refused:
        load_key_ring(settings)
    assert str(refused.value) == (
        f"the signing key file {path} is writable by group and others (mode 0666), so "
        f"its keys cannot be trusted: run `chmod 600 {path}` and start again"
    )


def test_a_key_file_readable_by_others_is_set_back_to_0600(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = rotation_settings(tmp_path)
    kid = load_key_ring(settings).current.kid
    path = key_path(tmp_path)
    path.chmod(0o644)
    assert load_key_ring(settings).current.kid == kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r.getMessage() for r in caplog.records] == [
        f"the signing key file {path} was readable by group and others (mode 0644): "
        "set to 0600; if others could read it, rotate the key (python run.py rotate-key)"
    ]


@pytest.mark.parametrize(
    ("mode", "who"), [(0o777, "group and others"), (0o770, "group")]
)
def test_a_data_folder_writable_by_others_is_refused(
    tmp_path: Path, mode: int, who: str
) -> None:
    settings = rotation_settings(tmp_path)
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(KeyFileError) as refused:
        load_key_ring(settings)
    assert str(refused.value) == (
        f"the data folder {folder} is writable by {who} (mode {mode:04o}), so anyone "
        f"could replace the signing keys: run `chmod go-w {folder}` (0700 is best) and "
        "start again"
    )
    assert not key_path(tmp_path).exists()


def test_a_shared_folder_with_the_sticky_bit_is_accepted_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As /tmp (API.md's AUTH_STORAGE_PATH=/tmp/auth.db): others may add entries but
    never rename or delete ours, and a key file that is not ours is refused."""
    settings = rotation_settings(tmp_path)
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o1777)
    kid = load_key_ring(settings).current.kid
    assert load_key_ring(settings).current.kid == kid
    assert [r.getMessage() for r in caplog.records] == [
        f"the data folder {folder} is shared with other users (mode 1777): a private "
        "folder (0700) is safer for the signing keys"
    ]


def test_a_key_file_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = rotation_settings(tmp_path)
    load_key_ring(settings)
    path = key_path(tmp_path)
    owner = path.stat().st_uid
    monkeypatch.setattr(keyfile.os, "geteuid", lambda: owner + 1)
    with pytest.raises(KeyFileError) as refused:
        load_key_ring(settings)
    assert str(refused.value) == (
        f"the signing key file {path} belongs to user id {owner}, not to this "
        f"server's user ({owner + 1}): run `chown` on it and start again"
    )


def test_a_new_data_folder_is_private(tmp_path: Path) -> None:
    load_key_ring(rotation_settings(tmp_path))
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_a_planted_link_is_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Links planted at the temporary name the writer draws, at the former fixed
    temporary name, and at the lock file: no write goes through any of them."""
    settings = rotation_settings(tmp_path)
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    target = tmp_path / "target"
    target.write_text("precious")
    (folder / ".signing_keys.json.planted.tmp").symlink_to(target)
    (folder / "signing_keys.tmp").symlink_to(target)
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(keyfile.secrets, "token_hex", lambda n: next(names))
    ring = load_key_ring(settings)
    assert target.read_text() == "precious"
    assert not key_path(tmp_path).is_symlink()
    assert load_key_ring(settings).current.kid == ring.current.kid
    assert not (folder / ".signing_keys.json.fresh.tmp").exists()

    (folder / LOCK_FILE_NAME).unlink()
    (folder / LOCK_FILE_NAME).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeyFileError) as refused:
        rotate(settings)
    assert str(refused.value) == (
        f"{folder / LOCK_FILE_NAME} is a symbolic link: remove it (the "
        "server creates it)"
    )
    assert not (tmp_path / "elsewhere").exists()


def test_the_server_stops_at_once_on_a_corrupt_key_file(tmp_path: Path) -> None:
    """Checked before any worker starts (one and several go through the same check)."""
    env = server_env(tmp_path, AUTH_SERVER_WORKERS="2")
    path = key_path(tmp_path)
    path.parent.mkdir(mode=0o700)
    write_private(path, b'{"keys": [{"kid": 1}]')
    result = run_cli(["serve"], env)  # a hang would fail here (a 60 s timeout)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the signing key file {path} is unusable: not valid JSON (Expecting "
        f"',' delimiter); {FIX}\n"
    )
    assert result.stdout == ""


def test_the_server_refuses_a_key_file_others_may_write(tmp_path: Path) -> None:
    env = server_env(tmp_path)
    path = key_path(tmp_path)
    load_key_ring(make_settings(tmp_path, tokens=GENERATED))
    path.chmod(0o646)
    result = run_cli(["serve"], env)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the signing key file {path} is writable by others (mode 0646), so its "
        f"keys cannot be trusted: run `chmod 600 {path}` and start again\n"
    )


@pytest.mark.parametrize("backend", ["memory"])
async def test_the_middleware_rereads_the_key_file_for_an_unknown_kid(
    make_api: MakeApi,
) -> None:
    """Another instance signs with a key this one has not loaded (its timer is far
    off): the first request carrying it makes this process reread the file."""
    api = await make_api(tokens={**GENERATED, "key_reload_interval": 3600})
    auth = api.app[keys.AUTH]
    signed_in = await api.user()
    user = await auth.storage.get_user(signed_in["id"])
    sid = auth.access_tokens.verify(signed_in["accessToken"]).session_id
    elsewhere = AccessTokens(auth.settings.tokens, rotate(auth.settings, delay=0))
    token = elsewhere.issue(user, sid)
    assert (
        jwt.get_unverified_header(token)["kid"] not in auth.access_tokens.ring.verifying
    )
    response = await api.get("/api/test/user", token)
    assert (response.status, await response.text()) == (200, "User Content.")
    forged = AccessTokens(
        auth.settings.tokens,
        KeyRing([new_record("HS256", clock.epoch())], 60, clock.epoch()),
    ).issue(user, sid)
    refused = await api.get("/api/test/user", forged)
    assert (refused.status, (await refused.json())["code"]) == (401, "token_invalid")


@pytest.mark.parametrize("backend", ["memory"])
async def test_signup_rereads_the_key_file_for_an_admin_token_of_an_unknown_kid(
    make_api: MakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin's token signed by a key another instance just published still grants
    roles at sign-up: the optional token is checked with the same reload, not taken
    for nobody's."""
    monkeypatch.setattr(keywatch, "UNKNOWN_KID_GAP", 0.0)
    api = await make_api(tokens={**GENERATED, "key_reload_interval": 3600})
    auth = api.app[keys.AUTH]
    admin_token = await make_admin_token(api.app)
    claims = auth.access_tokens.verify(admin_token)
    admin = await auth.storage.get_user(claims.user_id)
    elsewhere = AccessTokens(auth.settings.tokens, rotate(auth.settings, delay=0))
    token = elsewhere.issue(admin, claims.session_id)
    with pytest.raises(UnknownKeyId):
        auth.access_tokens.verify(token)
    response = await api.signup("newmod", roles=["moderator"], token=token)
    assert response.status == 201
    created = await auth.storage.find_user(username="newmod")
    assert created is not None and created.roles == ("user", "moderator")
