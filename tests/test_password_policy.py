"""The password policy (zxcvbn score >= passwords.min_strength, 2 by default) and Unicode
normalisation (NFC before measuring, judging, hashing and checking; hashes made before
normalisation keep working, with the same work for unknown users)."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import AsyncIterator

import bcrypt
import pytest
from xkcdpass import xkcd_password

from server import passwords
from server.passwords import (
    Match,
    PasswordHasher,
    WeakPassword,
    _bcrypt_input,
    check_length,
    check_strength,
)
from server.settings import PasswordSettings
from tests.conftest import Api, expect_error

memory_only = pytest.mark.parametrize("backend", ["memory"])
DEFAULTS = PasswordSettings()
TOO_COMMON = "password is too common or too easy to guess"
# zxcvbn score 1: guessed in under 10^6 tries.
GUESSABLE = [
    "abc12345",
    "letmein123",
    "P@ssw0rd123",
    "iloveyou12",
    "monkey123456",
    "password1234",
    "Qwerty123!",
    "dragon2020",
    "trustno1!",
]
COMPOSED = "Café Crème brûlée 42"
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def eff_passphrases(count: int, seed: int) -> list[str]:
    """Random 4-word passphrases from the EFF long word list (7776 words), joined by a
    space, a hyphen or nothing."""
    words = sorted(  # in a fixed order: the same seed then gives the same phrases
        xkcd_password.generate_wordlist(
            wordfile=xkcd_password.locate_wordfile("eff-long"),
            min_length=1,
            max_length=20,
        )
    )
    assert len(words) == 7776
    rng = random.Random(seed)
    separators = (" ", "-", "")
    return [separators[n % 3].join(rng.sample(words, 4)) for n in range(count)]


@pytest.fixture
async def hasher() -> AsyncIterator[PasswordHasher]:
    hasher = PasswordHasher(PasswordSettings(bcrypt_rounds=4, hash_workers=1))
    await hasher.start()
    yield hasher
    hasher.close()


def test_the_default_is_score_2() -> None:
    assert DEFAULTS.min_strength == 2


@pytest.mark.parametrize("password", GUESSABLE)
def test_guessable_passwords_are_refused_by_default(password: str) -> None:
    with pytest.raises(WeakPassword, match=f"^{TOO_COMMON}$"):
        check_strength(password, DEFAULTS, [], "password")


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery",
        "correct horse battery staple",
        "Tr0ub4dor&3",
        *eff_passphrases(24, seed=20240501),
    ],
)
def test_passphrases_pass(password: str) -> None:
    check_strength(password, DEFAULTS, ["alice", "alice@example.com"], "password")


def test_the_four_most_common_eff_words_still_pass() -> None:
    """The hardest 4-word case for zxcvbn: the list's words it ranks most common."""
    for phrase in ("from had other during", "only most city state"):
        check_strength(phrase, DEFAULTS, [], "password")


@memory_only
@pytest.mark.parametrize("password", ["abc12345", "letmein123", "P@ssw0rd123"])
async def test_signup_refuses_the_three_examples(api: Api, password: str) -> None:
    response = await api.signup("alice", password=password)
    await expect_error(response, 400, TOO_COMMON, "validation_error")


def test_the_strength_check_sees_the_nfc_form(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def spy(password: str, user_inputs: list[str]) -> dict:
        seen.append(password)
        return {"score": 4}

    monkeypatch.setattr(passwords, "zxcvbn", spy)
    check_strength(DECOMPOSED, DEFAULTS, [], "password")
    assert seen == [COMPOSED]


def test_the_minimum_length_counts_nfc_characters() -> None:
    settings = PasswordSettings(min_length=8)
    four_accents = "e\u0301" * 4  # 8 code points, 4 characters
    with pytest.raises(WeakPassword, match=r"^password must be at least 8 characters$"):
        check_length(four_accents, settings)
    check_length("e\u0301" * 8, settings)
    with pytest.raises(
        WeakPassword, match=r"^password must be at most 128 characters$"
    ):
        check_length("e\u0301" * 65, settings)  # 130 code points as sent


async def test_a_password_matches_in_either_form(hasher: PasswordHasher) -> None:
    stored = await hasher.hash(DECOMPOSED)
    assert bcrypt.checkpw(_bcrypt_input(COMPOSED), stored.encode())  # NFC was hashed
    assert await hasher.check(COMPOSED, stored) is Match.YES
    assert await hasher.check(DECOMPOSED, stored) is Match.YES
    assert await hasher.verify(DECOMPOSED, stored) is True
    assert await hasher.check("Cafe Creme brulee 42", stored) is Match.NO


async def test_hashes_from_before_normalisation_keep_working(
    hasher: PasswordHasher,
) -> None:
    """Such a hash was made from the text as typed: typing it the same way matches
    (LEGACY: the caller may rehash); the NFC form of it cannot be told from it."""
    legacy = bcrypt.hashpw(_bcrypt_input(DECOMPOSED), bcrypt.gensalt(4)).decode()
    assert await hasher.check(DECOMPOSED, legacy) is Match.LEGACY
    assert await hasher.verify(DECOMPOSED, legacy) is True
    assert await hasher.check("wrong" + DECOMPOSED, legacy) is Match.NO


@pytest.mark.parametrize(
    ("password", "runs"), [("plain ascii passphrase", 1), (DECOMPOSED, 2)]
)
async def test_unknown_users_cost_the_same_bcrypt_runs_as_wrong_passwords(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch, password: str, runs: int
) -> None:
    """The number of bcrypt runs depends on the text sent, never on the account."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(candidate: bytes, stored: bytes) -> bool:
        calls.append(stored)
        return real(candidate, stored)

    monkeypatch.setattr(passwords.bcrypt, "checkpw", counting)
    known = await hasher.hash("the account's real passphrase")
    assert await hasher.verify(password, known) is False
    wrong_password_runs, calls[:] = len(calls), []
    assert await hasher.verify(password, None) is False
    assert (wrong_password_runs, len(calls)) == (runs, runs)


@memory_only
async def test_signin_with_the_other_form_of_the_password(api: Api) -> None:
    assert (await api.signup("alice", password=COMPOSED)).status == 201
    assert (await api.signin("alice", DECOMPOSED)).status == 200
    assert (await api.signup("bob", password=DECOMPOSED)).status == 201
    assert (await api.signin("bob", COMPOSED)).status == 200
