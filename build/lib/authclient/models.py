"""Plain values the client hands back: a read response, the signed-in user."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from multidict import CIMultiDictProxy


@dataclass(frozen=True)
class Response:
    """A response read in full, so no connection is left for the caller to release
    (and so a failed call can be retried without a half-read body around)."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    charset: str = "utf-8"

    def text(self) -> str:
        return self.body.decode(self.charset, "replace")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class User:
    """Who signed in, as the sign-in response says (roles as `ROLE_USER`, ...)."""

    id: str
    username: str
    email: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Tokens:
    """The pair a sign-in or a refresh returns; kept in memory only."""

    access: str
    refresh: str
