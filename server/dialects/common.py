"""What both seed dialects need: core errors restated in a dialect's terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ApiError, ErrorCode

# How a dialect restates a core error: its status and message; the code stays.
Terms = Mapping[ErrorCode, tuple[int, str]]


class Worded(ApiError):
    """An error already worded in a dialect's terms: its renderer answers it as raised,
    with `extra` keys added to the body (wpcodevo's `errors` list)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: ErrorCode,
        headers: dict[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, message, code, headers)
        self.extra = dict(extra or {})


def restate(error: ApiError, terms: Terms) -> ApiError:
    """The error in a dialect's terms. A condition the seed does not show keeps the
    core's status, message and code (the renderer gives it the dialect's shape)."""
    if isinstance(error, Worded) or error.code not in terms:
        return error
    status, message = terms[error.code]
    return ApiError(status, message, error.code, error.headers)
