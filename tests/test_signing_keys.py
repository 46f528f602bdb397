"""Generated signing keys: kept in the data folder, rotated by command or on schedule,
picked up by a running server, retired keys verifying until their tokens expired."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import jwt
import pytest

from server import keywatch, signing_keys
from server.signing_keys import KeyRotationError, load_key_ring, rotate
from tests.conftest import MakeApi, make_settings

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
    make_api: MakeApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keywatch, "KEY_RELOAD_SECONDS", 0.05)
    api = await make_api(tokens=GENERATED)
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
