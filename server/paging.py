"""Cursor pagination of the user list: a page holds users ordered by (created_at, id) and
the cursor of the next page names the last user's (created_at, id).

The cursor is opaque to clients (URL-safe base64 of a small JSON array) so that its form
may change; it is not secret and not signed: a forged cursor only moves the start of a
page the admin may read anyway. Keyset paging, not offsets: users created meanwhile never
shift a page, so paging visits every user that existed throughout exactly once."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from storage import User

from .errors import validation_error

MAX_CURSOR = 256  # characters: far above any cursor we hand out
MAX_ID = 128  # a user id inside a cursor
INVALID_CURSOR = "cursor is not valid: pass the next of the previous page"
# JSON numbers beyond 2**53 lose precision in most clients; no timestamp gets near it.
MAX_TIME = 2**53


@dataclass(frozen=True)
class UsersPage:
    users: list[User]
    next: str | None  # the cursor of the next page; None on the last page


def encode_cursor(user: User) -> str:
    raw = json.dumps([user.created_at, user.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (created_at, id) a cursor names; 400 validation_error for anything else."""
    try:
        if len(cursor) > MAX_CURSOR or not cursor.isascii():
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, user_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error, RecursionError):
        raise validation_error(INVALID_CURSOR) from None
    if (
        type(created_at) is not int
        or not -MAX_TIME < created_at < MAX_TIME
        or not isinstance(user_id, str)
        or len(user_id) > MAX_ID
    ):
        raise validation_error(INVALID_CURSOR)
    return created_at, user_id


def page_of(found: list[User], limit: int) -> UsersPage:
    """A page from up to `limit + 1` users read: the one past the limit only says that
    there is a next page, so the last page's `next` is null, not a page of nothing."""
    if len(found) <= limit:
        return UsersPage(found, None)
    users = found[:limit]
    return UsersPage(users, encode_cursor(users[-1]))
