"""What the client raises: the server's error body, typed, so callers branch on `code`."""

from __future__ import annotations

import json


class AuthClientError(Exception):
    """Base of every error this package raises (transport errors stay aiohttp's)."""


class ApiError(AuthClientError):
    """A response of status 400 or more. `code` and `message` come from the contract's
    `{"message", "code"}` body; a body of another shape leaves `code` as `None`."""

    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(f"{status} {code or '-'}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def from_body(cls, status: int, body: bytes, reason: str = "") -> ApiError:
        """Read the error body leniently: a proxy in between may answer in HTML."""
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            code, message = parsed.get("code"), parsed.get("message")
            if isinstance(message, str):
                return cls(status, code if isinstance(code, str) else None, message)
        text = body.decode("utf-8", "replace").strip()
        return cls(status, None, text[:200] or reason)


class SessionExpired(ApiError):
    """The sign-in is over: the refresh was refused (`refresh_expired`, `refresh_revoked`,
    `refresh_reused`, ...) or the session ended while the call was in flight. The client
    has forgotten its tokens; the only way on is a new sign-in."""


class NotSignedIn(AuthClientError):
    """An operation that needs the refresh token was asked of a signed-out client."""
