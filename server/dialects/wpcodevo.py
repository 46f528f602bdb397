"""The wpcodevo API (seed 002: TypeScript, MongoDB, Redis, cookies) over the service.

Login and refresh answer the access token in the body and in the `access_token` cookie;
the refresh token travels only in the `refresh_token` cookie; `logged_in` tells the front
end's JavaScript that a session exists. Protected routes read the access token from
`Authorization: Bearer`, else from the cookie. Bodies are `{"status": "success" | "fail" |
"error", ...}`, every error with API.md's `code` added. Refresh and logout act on cookies
alone, so they refuse cross-site requests first (see crosssite.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from .. import keys
from ..bodies import read_object
from ..caller import Caller
from ..errors import ApiError, ErrorCode, csrf_failed
from ..guards import Role, current_claims
from ..handlers.common import user_record
from ..middleware import RouteMark, authorize_async, read_bearer_token
from ..routes import Answer, Route, RouteSet
from ..schemas import UserRecord
from ..settings import Settings
from . import GROUP
from .common import Terms, Worded, restate
from .crosssite import is_cross_site
from .fields import Failure, Field, Problem, Rule, body_model, failures

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"
LOGGED_IN_COOKIE = "logged_in"
SAMESITE = "Lax"
PASSWORD_LABEL = "password: Password"  # how the service's password errors name it

REGISTER = (
    Field("name", "Name", Rule.NAME),
    Field("email", "Email", Rule.EMAIL),
    Field("password", "Password", Rule.NEW_PASSWORD),
    Field("passwordConfirm", "Password confirmation", Rule.CONFIRM, "password"),
)
LOGIN = (
    Field("email", "Email"),
    Field("password", "Password"),
)

ZOD_WORDING = {
    Problem.REQUIRED: "{label} is required",
    Problem.NOT_STRING: "{label} must be a string",
    Problem.EMPTY: "{label} must not be empty",
    Problem.TOO_SHORT: "{label} must be at least {limit} characters",
    Problem.TOO_LONG: "{label} must be at most {limit} characters",
    Problem.CONTROL: "{label} must not contain control characters",
    Problem.INVALID_EMAIL: "Invalid email",
    Problem.MISMATCH: "Passwords do not match",
    Problem.UNKNOWN: "{label} is not allowed",
}
CONFIRM_MISSING = "Please confirm your password"

_NOT_LOGGED_IN = (401, "You are not logged in")
_BAD_TOKEN = (401, "Invalid token or user doesn't exist")
_NO_REFRESH = (403, "Could not refresh access token")
SEED_TERMS: Terms = {
    ErrorCode.TOKEN_MISSING: _NOT_LOGGED_IN,
    ErrorCode.TOKEN_EXPIRED: _BAD_TOKEN,
    ErrorCode.TOKEN_INVALID: _BAD_TOKEN,
    ErrorCode.TOKEN_REVOKED: (401, "User session has expired"),
    ErrorCode.FORBIDDEN: (403, "You are not allowed to perform this action"),
    ErrorCode.REFRESH_MISSING: _NO_REFRESH,
    ErrorCode.REFRESH_UNKNOWN: _NO_REFRESH,
    ErrorCode.REFRESH_EXPIRED: _NO_REFRESH,
    ErrorCode.REFRESH_REVOKED: _NO_REFRESH,
    ErrorCode.REFRESH_REUSED: _NO_REFRESH,
    ErrorCode.INVALID_CREDENTIALS: (401, "Invalid email or password"),
    ErrorCode.EMAIL_TAKEN: (409, "Email already exist"),
}


# reading requests


def read_token(request: web.BaseRequest) -> str | None:
    """The access token of `Authorization: Bearer` (read as the core reads it), else
    of the `access_token` cookie. Two different Bearer tokens are refused
    (token_invalid), as in the core; `x-access-token` is not this seed's."""
    return read_bearer_token(request) or request.cookies.get(ACCESS_COOKIE) or None


def zod_text(failure: Failure) -> str:
    if failure.key == "passwordConfirm" and failure.problem in (
        Problem.REQUIRED,
        Problem.EMPTY,
    ):
        return CONFIRM_MISSING
    return ZOD_WORDING[failure.problem].format(label=failure.label, limit=failure.limit)


async def _valid_body(request: web.Request, fields: tuple[Field, ...]) -> dict:
    """The body, or 400 naming the first failing field (`key: text`), with every
    failure in `errors`. Keys the schema does not have are ignored."""
    body = await read_object(request)
    passwords = request.app[keys.AUTH].settings.passwords
    found = failures(body, fields, passwords, refuse_unknown=False)
    if not found:
        return body
    issues = [{"path": [f.key], "message": zod_text(f)} for f in found]
    first = found[0]
    raise Worded(
        400,
        f"{first.key}: {zod_text(first)}",
        ErrorCode.VALIDATION_ERROR,
        extra={"errors": issues},
    )


def _refuse_cross_site(request: web.Request) -> None:
    """Before anything else: a refused request changes nothing."""
    if is_cross_site(request, request.app[keys.AUTH].cookies.origins):
        raise csrf_failed()


# answering


def _set_cookie(
    response: web.Response,
    settings: Settings,
    name: str,
    value: str,
    max_age: int,
    *,
    httponly: bool = True,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=settings.cookies.secure,
        httponly=httponly,
        samesite=SAMESITE,
    )


def _token_answer(
    settings: Settings, access_token: str, refresh_token: str | None
) -> web.Response:
    """`{"status": "success", "access_token"}` with the session's cookies; the refresh
    cookie only when there is a new refresh token to keep."""
    response = web.json_response({"status": "success", "access_token": access_token})
    ttl = settings.tokens
    _set_cookie(response, settings, ACCESS_COOKIE, access_token, ttl.access_ttl)
    if refresh_token is not None:
        _set_cookie(response, settings, REFRESH_COOKIE, refresh_token, ttl.refresh_ttl)
    _set_cookie(
        response, settings, LOGGED_IN_COOKIE, "true", ttl.access_ttl, httponly=False
    )
    return response


def _clear_cookies(response: web.Response, settings: Settings) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE, LOGGED_IN_COOKIE):
        response.del_cookie(
            name,
            path="/",
            secure=settings.cookies.secure,
            httponly=name != LOGGED_IN_COOKIE,
            samesite=SAMESITE,
        )


def render(request: web.Request, error: ApiError) -> web.Response:
    """`{"status": "fail", "message", "code"}` (`"error"` for a 5xx) in the seed's
    terms. Every middleware error is 401, a missing token included."""
    error = restate(error, SEED_TERMS)
    body: dict[str, Any] = {
        "status": "fail" if error.status < 500 else "error",
        "message": error.message,
        "code": str(error.code),
    }
    if isinstance(error, Worded):
        body.update(error.extra)
    headers = dict(error.headers)
    if error.status == 401 and error.code is not ErrorCode.INVALID_CREDENTIALS:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return web.json_response(body, status=error.status, headers=headers)


# handlers


async def health_checker(request: web.Request) -> web.Response:
    return web.json_response(
        {"status": "success", "message": "Welcome to CodevoWeb????"}
    )


async def register(request: web.Request) -> web.Response:
    body = await _valid_body(request, REGISTER)
    user = await request.app[keys.AUTH].service.register(
        Caller.of(request),
        display_name=body["name"],
        email=body["email"],
        password=body["password"],
        password_field=PASSWORD_LABEL,
    )
    return web.json_response(
        {"status": "success", "data": {"user": user_record(user)}}, status=201
    )


async def login(request: web.Request) -> web.Response:
    body = await _valid_body(request, LOGIN)
    auth = request.app[keys.AUTH]
    signed_in = await auth.service.signin(
        Caller.of(request), email=body["email"], password=body["password"]
    )
    return _token_answer(auth.settings, signed_in.access_token, signed_in.refresh_token)


async def refresh(request: web.Request) -> web.Response:
    """The refresh cookie rotates as in the core (reuse detection included); the
    successor goes back in the cookie."""
    _refuse_cross_site(request)
    auth = request.app[keys.AUTH]
    refreshed = await auth.service.refresh(
        Caller.of(request), request.cookies.get(REFRESH_COOKIE)
    )
    successor = refreshed.refresh_token if refreshed.rotated else None
    return _token_answer(auth.settings, refreshed.access_token, successor)


LOGOUT_GUARD = RouteMark(Role.USER, render, read_token)


async def logout(request: web.Request) -> web.Response:
    """Revoke the session of the refresh cookie, else the access token's; the user's
    other sessions stay. The access token is checked here, after the cross-site
    check, not by the middleware before it, in the same way (a token of a key
    published since this process last read the key file included)."""
    _refuse_cross_site(request)
    auth = request.app[keys.AUTH]
    claims = await authorize_async(auth.service, request, LOGOUT_GUARD)
    caller = Caller.of(request)
    cookie = request.cookies.get(REFRESH_COOKIE)
    if not cookie or await auth.service.signout(caller, cookie) is None:
        await auth.service.signout_session(caller, claims)
    response = web.json_response({"status": "success"})
    _clear_cookies(response, auth.settings)
    return response


async def me(request: web.Request) -> web.Response:
    try:
        user = await request.app[keys.AUTH].service.current_user(
            current_claims(request)
        )
    except ApiError as error:
        if error.code is not ErrorCode.TOKEN_REVOKED:
            raise
        raise Worded(
            401, "User with that token no longer exist", error.code, error.headers
        ) from None
    return web.json_response({"status": "success", "data": {"user": user_record(user)}})


async def all_users(request: web.Request) -> web.Response:
    """Every user, as in the seed (admins only, by the route table)."""
    users = await request.app[keys.AUTH].service.every_user()
    return web.json_response(
        {
            "status": "success",
            "result": len(users),
            "data": {"users": [user_record(user) for user in users]},
        }
    )


# Shapes, for the OpenAPI document.


class WpcodevoError(BaseModel):
    status: Literal["fail", "error"]
    message: str
    code: str
    errors: list[dict[str, Any]] | None = None


class WpcodevoHealth(BaseModel):
    status: Literal["success"]
    message: str


class WpcodevoStatus(BaseModel):
    status: Literal["success"]


class WpcodevoToken(BaseModel):
    status: Literal["success"]
    access_token: str


class WpcodevoUserData(BaseModel):
    user: UserRecord


class WpcodevoUserAnswer(BaseModel):
    status: Literal["success"]
    data: WpcodevoUserData


class WpcodevoUsersData(BaseModel):
    users: list[UserRecord]


class WpcodevoUsersAnswer(BaseModel):
    status: Literal["success"]
    result: int
    data: WpcodevoUsersData


# A route of this dialect: in the OpenAPI document under its tag, errors in its shape.
_route = partial(Route, tag="wpcodevo", group=GROUP, error_body=WpcodevoError)


_CSRF = Answer(403, "Cross-site request (csrf_failed)", WpcodevoError)
ROUTES = (
    _route(
        "GET",
        "/api/healthChecker",
        health_checker,
        "Says the server is up (wpcodevo)",
        (Answer(200, "Welcome", WpcodevoHealth),),
    ),
    _route(
        "POST",
        "/api/auth/register",
        register,
        "Create an account (wpcodevo)",
        (
            Answer(201, "Created", WpcodevoUserAnswer),
            Answer(409, "Email already exist", WpcodevoError),
        ),
        body=body_model("WpcodevoRegisterBody", REGISTER, refuse_unknown=False),
        rate_limited=True,
    ),
    _route(
        "POST",
        "/api/auth/login",
        login,
        "Log in by email; sets the access_token, refresh_token and logged_in"
        " cookies (wpcodevo)",
        (
            Answer(200, "Logged in", WpcodevoToken),
            Answer(401, "Invalid email or password", WpcodevoError),
        ),
        body=body_model("WpcodevoLoginBody", LOGIN, refuse_unknown=False),
        rate_limited=True,
    ),
    _route(
        "GET",
        "/api/auth/refresh",
        refresh,
        "A new access token for the refresh_token cookie, which rotates (wpcodevo)",
        (
            Answer(200, "Refreshed; the cookies are set again", WpcodevoToken),
            Answer(
                403,
                "Cross-site request, or no refresh cookie or one refused",
                WpcodevoError,
            ),
        ),
        rate_limited=True,
    ),
    _route(
        "GET",
        "/api/auth/logout",
        logout,
        "Log out: revoke the session and clear the cookies (wpcodevo)",
        (
            Answer(200, "Logged out", WpcodevoStatus),
            Answer(401, "No valid access token", WpcodevoError),
            _CSRF,
        ),
    ),
    _route(
        "GET",
        "/api/users/me",
        me,
        "The signed-in user (wpcodevo)",
        (Answer(200, "The user", WpcodevoUserAnswer),),
        role=Role.USER,
    ),
    _route(
        "GET",
        "/api/users",
        all_users,
        "Every user (admin; wpcodevo)",
        (
            Answer(200, "Every user", WpcodevoUsersAnswer),
            Answer(403, "Not an admin", WpcodevoError),
        ),
        role=Role.ADMIN,
    ),
)
ROUTE_SET = RouteSet("wpcodevo", ROUTES, render=render, read_token=read_token)
