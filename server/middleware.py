"""The auth middleware: one layer, because every layer costs a coroutine per request on
the hottest path. For the routes it owns it does three things in order:
- authorize: verify the access token of guarded routes and check their role (no I/O);
- render every failure in the route set's shape (the core contract's JSON by default);
- add the security headers;
- time the request for the metrics (`auth_http_request_duration_seconds`), and count
  every error it answers (`Metrics.error_answer`).

It owns the auth routes and, when the server runs on its own, every route of the app, so
aiohttp's own 404/405/413 answer in the contract's shape too. Embedded in a host app it
leaves the host's routes alone: a host handler guarded with `requires(...)` gets only the
token check, and only a failed check is answered in the contract's shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from aiohttp import hdrs, web
from multidict import istr

from storage import StorageUnavailable

from . import errors, keys
from .errors import ApiError
from .events import log_event
from .guards import GUARD_ATTRIBUTE, Role
from .metrics import Metrics
from .service import AuthService, KeyReloadNeeded
from .tokens import AccessClaims

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

ErrorRenderer = Callable[[web.Request, ApiError], web.StreamResponse]
TokenReader = Callable[[web.BaseRequest], "str | None"]


class ConflictingTokens(Exception):
    """Two different access tokens in one request: refuse rather than guess which one a
    proxy in front of us checked."""


def read_access_token(request: web.BaseRequest) -> str | None:
    """The access token of `x-access-token` (the seeds) or `Authorization: Bearer`.
    Raises ConflictingTokens when they (or repeats of one header) carry different
    tokens."""
    found = None
    for value in request.headers.getall(X_ACCESS_TOKEN, ()):
        found = _same_token(found, value.strip())
    return _same_token(found, read_bearer_token(request))


def read_bearer_token(request: web.BaseRequest) -> str | None:
    """The access token of `Authorization: Bearer` alone (the wpcodevo dialect's
    header). Raises ConflictingTokens when repeats of the header differ."""
    found = None
    for value in request.headers.getall(hdrs.AUTHORIZATION, ()):
        if value[: len(BEARER)].lower() == BEARER:
            found = _same_token(found, value[len(BEARER) :].strip())
    return found


def _same_token(found: str | None, token: str | None) -> str | None:
    if not token:
        return found
    if found is not None and found != token:
        raise ConflictingTokens
    return token


def render_error(request: web.Request, error: ApiError) -> web.Response:
    """The core contract's error: `{"message", "code"}` with the error's status."""
    return web.json_response(error.body(), status=error.status, headers=error.headers)


@dataclass(frozen=True)
class RouteMark:
    """What the middleware needs to know about one of the auth server's routes."""

    role: Role | None = None
    render: ErrorRenderer = render_error
    read_token: TokenReader = read_access_token


CORE_ROUTE = RouteMark()


def authorize(
    service: AuthService, request: web.BaseRequest, mark: RouteMark
) -> AccessClaims:
    """The claims of the request's access token, with the route's role, or the
    contract's error (KeyReloadNeeded: see `authorize_reloaded`)."""
    try:
        token = mark.read_token(request)
    except ConflictingTokens:
        raise errors.token_invalid() from None
    return _with_role(service.authenticate(token), mark.role)


async def authorize_reloaded(
    service: AuthService, reload: KeyReloadNeeded, mark: RouteMark
) -> AccessClaims:
    """The rare path: the token's key was published since this process last read the
    key file; read it again (throttled) and check the token once more."""
    return _with_role(await service.authenticate_reloaded(reload.token), mark.role)


def _with_role(claims: AccessClaims, role: Role | None) -> AccessClaims:
    if role is not Role.USER and role is not None and role.value not in claims.roles:
        raise errors.forbidden(role.denied_message)
    return claims


async def authorize_async(
    service: AuthService, request: web.BaseRequest, mark: RouteMark
) -> AccessClaims:
    """`authorize`, rereading the key file for a token of a key not loaded yet: for a
    handler that checks the token itself, after checks of its own."""
    try:
        return authorize(service, request, mark)
    except KeyReloadNeeded as reload:
        return await authorize_reloaded(service, reload, mark)


def auth_middleware(
    service: AuthService,
    marks: dict[web.AbstractRoute, RouteMark],
    *,
    owns_app: bool,
    max_body_bytes: int,
) -> Callable:
    """The middleware for one Auth: `marks` holds the routes it set up; with `owns_app`
    every other route of the app is treated as its own too."""
    metrics = service.metrics
    timed = metrics.enabled  # off: not even the clock is read
    observe = metrics.request

    @web.middleware
    async def auth(request: web.Request, handler: errors.Handler) -> web.StreamResponse:
        match_info = request.match_info
        route = match_info.route
        mark = marks.get(route)
        if mark is None:
            role = getattr(match_info.handler, GUARD_ATTRIBUTE, None)
            if role is not None:
                return await _host_guarded(request, handler, RouteMark(role))
            if not owns_app:
                return await handler(request)
            mark = CORE_ROUTE
        started = perf_counter() if timed else 0.0
        try:
            if mark.role is not None:
                try:
                    request[keys.CLAIMS] = authorize(service, request, mark)
                except KeyReloadNeeded as reload:
                    claims = await authorize_reloaded(service, reload, mark)
                    request[keys.CLAIMS] = claims
            response = await handler(request)
        except ApiError as error:
            response = _render(request, mark, error, metrics)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            error = _from_http_exception(request, exc, max_body_bytes)
            response = _render(request, mark, error, metrics)
        except StorageUnavailable:
            logger.warning("storage unavailable on %s %s", request.method, request.path)
            response = _render(request, mark, errors.unavailable(), metrics)
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, request.path)
            response = _render(request, mark, errors.internal_error(), metrics)
        if not response.prepared:
            headers = response.headers
            for name, value in SECURITY_HEADERS:
                headers[name] = value
            if hdrs.CACHE_CONTROL not in headers:
                headers[hdrs.CACHE_CONTROL] = DEFAULT_CACHE_CONTROL
        if timed:
            observe(route, response.status, perf_counter() - started)
        return response

    async def _host_guarded(
        request: web.Request, handler: errors.Handler, mark: RouteMark
    ) -> web.StreamResponse:
        """A host's own handler: only a failed token check is ours to answer."""
        try:
            request[keys.CLAIMS] = await authorize_async(service, request, mark)
        except ApiError as error:
            response = render_error(request, error)
            response.headers[hdrs.CACHE_CONTROL] = DEFAULT_CACHE_CONTROL
            return response
        return await handler(request)

    return auth


def _render(
    request: web.Request, mark: RouteMark, error: ApiError, metrics: Metrics
) -> web.StreamResponse:
    """Every error the middleware answers: counted by code, a 429 logged too."""
    metrics.error_answer(request, error.code)
    if error.code is errors.ErrorCode.RATE_LIMITED:
        log_event("rate_limited", request, level=logging.WARNING)
    return mark.render(request, error)


def _from_http_exception(
    request: web.Request, exc: web.HTTPException, max_body_bytes: int
) -> ApiError:
    """aiohttp's own 404/405/413 (and any other HTTP error) in the contract's shape."""
    if isinstance(exc, web.HTTPNotFound):
        return errors.not_found(request.path)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        error = errors.method_not_allowed(request.method, request.path)
        error.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return error
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return errors.payload_too_large(max_body_bytes)
    return ApiError(exc.status, exc.reason, errors.ErrorCode.BAD_REQUEST)
