"""Canonical identities: the keys that make usernames and emails unique, so that
look-alike spellings of one name are one account (issue 16.5).

Both key functions are total: any text gives a key, nothing raises. A lookup of arbitrary
login text finds the account whose key it shares, or nobody.
"""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email


def username_key(text: str) -> str:
    """NFKC, case-folded, NFKC again (case folding can leave text that is not NFKC, as
    with "İ"): full-width, ligature and case variants of one name share a key."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def email_key(text: str) -> str:
    """The uniqueness key of an email: email-validator's normalised local part,
    NFC-normalised and case-folded, then "@" and the ASCII (IDNA) domain in lower case.
    So `kevin@\uff45xample.com` (a full-width e) is `kevin@example.com`, and a Unicode domain, its punycode and
    its decomposed spelling are one. Text that is not a valid address (a lookup of any
    login text) falls back to the username key of the whole text."""
    try:
        valid = validate_email(text, check_deliverability=False, test_environment=True)
    except (EmailNotValidError, ValueError, TypeError):
        return username_key(text)
    local = unicodedata.normalize("NFC", valid.local_part.casefold())
    return f"{local}@{valid.ascii_domain.lower()}"


def canonical_email(text: str) -> str:
    """The display form to store: email-validator's `normalized` address (NFC local
    part, normalised domain); text that is not a valid address comes back NFC."""
    try:
        valid = validate_email(text, check_deliverability=False, test_environment=True)
    except (EmailNotValidError, ValueError, TypeError):
        return unicodedata.normalize("NFC", text)
    return valid.normalized


def legacy_key(text: str) -> str:
    """The key of version-1 databases (the text case-folded). A user whose canonical key
    was already another's when the database was upgraded keeps this key, and lookups
    of that exact spelling still find it (see `lookup_keys`)."""
    return text.casefold()


def lookup_keys(canonical: str, text: str) -> tuple[str, ...]:
    """The keys a lookup of `text` tries, the preferred first: a legacy key that differs
    from the canonical one is never a canonical key (those are NFKC and, for emails,
    have ASCII domains), so it can only match a user kept on it by the upgrade, whose
    exact spelling it is."""
    legacy = legacy_key(text)
    return (canonical,) if legacy == canonical else (legacy, canonical)
