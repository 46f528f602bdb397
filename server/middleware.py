"""Middlewares: errors (outermost) render every failure in the contract's JSON shape;
auth verifies the access token of guarded routes and checks their role."""

from __future__ import annotations

import logging

from aiohttp import web

from . import errors, keys
from .errors import ApiError
from .events import log_event
from .guards import required_role
from .tokens import TokenExpired, TokenInvalid

logger = logging.getLogger("auth.server")
BEARER = "bearer "


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: errors.Handler
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        if error.code is errors.ErrorCode.RATE_LIMITED:
            log_event(
                "rate_limited", request, level=logging.WARNING, route=request.path
            )
        return error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http_exception(request, exc))
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(errors.internal_error())


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    """aiohttp's own 404/405/413 (and any other HTTP error) in the contract's shape."""
    if isinstance(exc, web.HTTPNotFound):
        return errors.not_found(request.path)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        error = errors.method_not_allowed(request.method, request.path)
        error.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return error
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return errors.payload_too_large(
            request.app[keys.SETTINGS].server.max_body_bytes
        )
    return ApiError(exc.status, exc.reason, errors.ErrorCode.BAD_REQUEST)


def read_access_token(request: web.BaseRequest) -> str | None:
    """`x-access-token` (the seeds), else `Authorization: Bearer <token>`."""
    token = request.headers.get("x-access-token", "").strip()
    if token:
        return token
    authorization = request.headers.get("Authorization", "")
    if authorization[: len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER) :].strip() or None
    return None


@web.middleware
async def auth_middleware(
    request: web.Request, handler: errors.Handler
) -> web.StreamResponse:
    role = required_role(request.match_info.handler)
    if role is None:
        return await handler(request)
    token = read_access_token(request)
    if token is None:
        raise errors.token_missing()
    try:
        claims = request.app[keys.ACCESS_TOKENS].verify(token)
    except TokenExpired:
        raise errors.token_expired() from None
    except TokenInvalid:
        raise errors.token_invalid() from None
    if claims.session_id in request.app[keys.REVOCATIONS]:
        raise errors.token_revoked()
    if role.value not in claims.roles:
        raise errors.forbidden(role.denied_message)
    request[keys.CLAIMS] = claims
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: no sniffing, and nothing cached unless a handler says so
    (token responses must never be cached: RFC 6749 5.1)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers["Server"] = (
        "auth-server"  # not aiohttp's version: no free fingerprint
    )
