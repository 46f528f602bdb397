"""The server's middleware. One layer does three things in order, because every layer
costs a coroutine per request on the hottest path:
- authorize: verify the access token of guarded routes and check their role (no I/O);
- render every failure, aiohttp's own 404/405/413 included, in the contract's JSON shape;
- add the security headers to every response."""

from __future__ import annotations

import logging

from aiohttp import hdrs, web
from multidict import istr

from . import errors, keys
from .errors import ApiError
from .events import log_event
from .guards import required_role
from .tokens import TokenExpired, TokenInvalid

logger = logging.getLogger("auth.server")
BEARER = "bearer "
X_ACCESS_TOKEN = istr("x-access-token")
SECURITY_HEADERS = (
    (istr("X-Content-Type-Options"), "nosniff"),
    (istr("Referrer-Policy"), "no-referrer"),
    (hdrs.SERVER, "auth-server"),  # not aiohttp's version: no free fingerprint
)
# Nothing is cached unless a handler says so: token responses must never be (RFC 6749 5.1).
DEFAULT_CACHE_CONTROL = "no-store"


@web.middleware
async def api_middleware(
    request: web.Request, handler: errors.Handler
) -> web.StreamResponse:
    try:
        authorize(request)
        response = await handler(request)
    except ApiError as error:
        response = _render(request, error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _render(request, _from_http_exception(request, exc))
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        response = _render(request, errors.internal_error())
    if not response.prepared:
        headers = response.headers
        for name, value in SECURITY_HEADERS:
            headers[name] = value
        if hdrs.CACHE_CONTROL not in headers:
            headers[hdrs.CACHE_CONTROL] = DEFAULT_CACHE_CONTROL
    return response


def authorize(request: web.Request) -> None:
    """For a guarded route, put the verified claims on the request or raise the
    contract's error. Unguarded routes ignore any token sent with them."""
    role = required_role(request.match_info.handler)
    if role is None:
        return
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


def read_access_token(request: web.BaseRequest) -> str | None:
    """`x-access-token` (the seeds), else `Authorization: Bearer <token>`."""
    token = request.headers.get(X_ACCESS_TOKEN, "").strip()
    if token:
        return token
    authorization = request.headers.get(hdrs.AUTHORIZATION, "")
    if authorization[: len(BEARER)].lower() == BEARER:
        return authorization[len(BEARER) :].strip() or None
    return None


def _render(request: web.Request, error: ApiError) -> web.Response:
    if error.code is errors.ErrorCode.RATE_LIMITED:
        log_event("rate_limited", request, level=logging.WARNING)
    return web.json_response(error.body(), status=error.status, headers=error.headers)


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
