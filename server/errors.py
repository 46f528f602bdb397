"""The one home of the contract's error messages and codes (see shared/API.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "validation_error"
    UNKNOWN_ROLE = "unknown_role"
    FORBIDDEN = "forbidden"
    USERNAME_TAKEN = "username_taken"
    EMAIL_TAKEN = "email_taken"
    INVALID_CREDENTIALS = "invalid_credentials"
    RATE_LIMITED = "rate_limited"
    REFRESH_MISSING = "refresh_missing"
    REFRESH_UNKNOWN = "refresh_unknown"
    REFRESH_EXPIRED = "refresh_expired"
    REFRESH_REUSED = "refresh_reused"
    REFRESH_REVOKED = "refresh_revoked"
    CSRF_FAILED = "csrf_failed"
    TOKEN_MISSING = "token_missing"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_INVALID = "token_invalid"
    TOKEN_REVOKED = "token_revoked"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    BAD_REQUEST = "bad_request"
    UNAVAILABLE = "unavailable"
    ACCOUNT_DISABLED = "account_disabled"
    LAST_ADMIN = "last_admin"
    INTERNAL_ERROR = "internal_error"


class ApiError(Exception):
    """An error answered to the client as `{"message", "code"}` with its status."""

    def __init__(
        self,
        status: int,
        message: str,
        code: ErrorCode,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"message": self.message, "code": str(self.code)}


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def _unauthorized(message: str, code: ErrorCode) -> ApiError:
    return ApiError(401, message, code, dict(UNAUTHORIZED_HEADERS))


def validation_error(message: str) -> ApiError:
    return ApiError(400, message, ErrorCode.VALIDATION_ERROR)


def unknown_role(role: str) -> ApiError:
    return ApiError(400, f"Failed! Role {role} does not exist!", ErrorCode.UNKNOWN_ROLE)


def forbidden(message: str) -> ApiError:
    return ApiError(403, message, ErrorCode.FORBIDDEN)


def username_taken() -> ApiError:
    return ApiError(
        409, "Failed! Username is already in use!", ErrorCode.USERNAME_TAKEN
    )


def email_taken() -> ApiError:
    return ApiError(409, "Failed! Email is already in use!", ErrorCode.EMAIL_TAKEN)


def invalid_credentials(status: int = 401) -> ApiError:
    return ApiError(
        status, "Invalid username or password.", ErrorCode.INVALID_CREDENTIALS
    )


def wrong_current_password() -> ApiError:
    """400, not 401: the seeds' clients read any 401 as an expired access token."""
    return ApiError(
        400, "Current password is incorrect.", ErrorCode.INVALID_CREDENTIALS
    )


def rate_limited(retry_after: int) -> ApiError:
    seconds = max(1, retry_after)
    return ApiError(
        429,
        f"Too many requests. Try again in {seconds} seconds.",
        ErrorCode.RATE_LIMITED,
        {"Retry-After": str(seconds)},
    )


def refresh_missing() -> ApiError:
    return ApiError(403, "Refresh Token is required!", ErrorCode.REFRESH_MISSING)


def refresh_unknown() -> ApiError:
    return ApiError(403, "Refresh token is not in database!", ErrorCode.REFRESH_UNKNOWN)


def refresh_expired() -> ApiError:
    return ApiError(
        403,
        "Refresh token was expired. Please make a new signin request",
        ErrorCode.REFRESH_EXPIRED,
    )


def refresh_reused() -> ApiError:
    return ApiError(
        403,
        "Refresh token was already used. The session was revoked, please make a new signin request",
        ErrorCode.REFRESH_REUSED,
    )


def refresh_revoked() -> ApiError:
    return ApiError(
        403,
        "Refresh token was revoked. Please make a new signin request",
        ErrorCode.REFRESH_REVOKED,
    )


def csrf_failed() -> ApiError:
    """Cookie mode: a missing or wrong X-CSRF-Token, or a foreign Origin."""
    return ApiError(403, "CSRF check failed.", ErrorCode.CSRF_FAILED)


def token_missing() -> ApiError:
    return ApiError(403, "No token provided!", ErrorCode.TOKEN_MISSING)


def token_expired() -> ApiError:
    return _unauthorized(
        "Unauthorized! Access Token was expired!", ErrorCode.TOKEN_EXPIRED
    )


def token_invalid() -> ApiError:
    return _unauthorized("Unauthorized!", ErrorCode.TOKEN_INVALID)


def token_revoked() -> ApiError:
    return _unauthorized("Unauthorized!", ErrorCode.TOKEN_REVOKED)


def not_found(path: str) -> ApiError:
    return ApiError(404, f"Route {path} not found", ErrorCode.NOT_FOUND)


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(
        405, f"Method {method} is not allowed on {path}", ErrorCode.METHOD_NOT_ALLOWED
    )


def payload_too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"Request body is larger than {limit} bytes", ErrorCode.PAYLOAD_TOO_LARGE
    )


def unsupported_media_type() -> ApiError:
    return ApiError(
        415, "Content-Type must be application/json", ErrorCode.UNSUPPORTED_MEDIA_TYPE
    )


def user_not_found() -> ApiError:
    return ApiError(404, "User not found.", ErrorCode.NOT_FOUND)


def session_not_found() -> ApiError:
    """The same for an unknown id, another user's session and one no longer live."""
    return ApiError(404, "Session not found.", ErrorCode.NOT_FOUND)


def account_disabled() -> ApiError:
    return ApiError(403, "Account is disabled.", ErrorCode.ACCOUNT_DISABLED)


def last_admin() -> ApiError:
    return ApiError(409, "The last admin cannot be removed.", ErrorCode.LAST_ADMIN)


def unavailable() -> ApiError:
    return ApiError(503, "Service unavailable.", ErrorCode.UNAVAILABLE)


def internal_error() -> ApiError:
    return ApiError(500, "Internal server error", ErrorCode.INTERNAL_ERROR)
