"""The cyberwolves API (seed 001: Express, MongoDB, Joi) over the service.

`POST /api/signUp`, `POST /api/logIn`, `POST /api/refreshToken` and `DELETE
/api/refreshToken`; both tokens travel in JSON bodies, no cookies. Bodies are `{"error":
bool, "message", ...}`, every error with API.md's `code` added. Validation is Joi's:
the first failure only, keys in schema order, then unknown keys (refused, so a `roles`
key never grants anything). The refresh answer keeps the seed's shape (no new refresh
token): the server rotates as usual and the client's first token keeps working unless
`tokens.strict_rotation` is on.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from .. import keys
from ..bodies import read_object
from ..caller import Caller
from ..errors import ApiError, ErrorCode
from ..routes import Answer, Route, RouteSet
from . import GROUP
from .common import Terms, Worded, restate
from .fields import Failure, Field, Problem, Rule, body_model, failures

SIGN_UP = (
    Field("userName", "User Name", Rule.NAME),
    Field("email", "Email", Rule.EMAIL),
    Field("password", "Password", Rule.NEW_PASSWORD),
)
LOG_IN = (
    Field("email", "Email", Rule.EMAIL),
    Field("password", "Password"),
)
REFRESH = (Field("refreshToken", "Refresh Token"),)
PASSWORD_LABEL = '"Password"'  # how the service's password errors name the field

JOI_WORDING = {
    Problem.REQUIRED: "is required",
    Problem.NOT_STRING: "must be a string",
    Problem.EMPTY: "is not allowed to be empty",
    Problem.TOO_SHORT: "length must be at least {limit} characters long",
    Problem.TOO_LONG: "length must be less than or equal to {limit} characters long",
    Problem.CONTROL: "must not contain control characters",
    Problem.INVALID_EMAIL: "must be a valid email",
    Problem.MISMATCH: "does not match",
    Problem.UNKNOWN: "is not allowed",
}

_INVALID_REFRESH = (400, "Invalid refresh token")
SEED_TERMS: Terms = {
    ErrorCode.EMAIL_TAKEN: (400, "User with given email already exist"),
    ErrorCode.INVALID_CREDENTIALS: (401, "Invalid email or password"),
    ErrorCode.REFRESH_UNKNOWN: _INVALID_REFRESH,
    ErrorCode.REFRESH_EXPIRED: _INVALID_REFRESH,
    ErrorCode.REFRESH_REVOKED: _INVALID_REFRESH,
    ErrorCode.REFRESH_REUSED: _INVALID_REFRESH,
    ErrorCode.INTERNAL_ERROR: (500, "Internal Server Error"),
}


def joi_message(failure: Failure) -> str:
    wording = JOI_WORDING[failure.problem].format(limit=failure.limit)
    return f'"{failure.label}" {wording}'


async def _valid_body(
    request: web.Request, fields: Sequence[Field], missing: ErrorCode | None = None
) -> dict[str, Any]:
    """The body, or 400 with Joi's first message. `missing`: the code for the first
    field absent or empty (refresh_missing on the refresh routes)."""
    body = await read_object(request)
    passwords = request.app[keys.AUTH].settings.passwords
    found = failures(body, fields, passwords, refuse_unknown=True)
    if not found:
        return body
    first = found[0]
    code = ErrorCode.VALIDATION_ERROR
    if missing is not None and first.problem in (Problem.REQUIRED, Problem.EMPTY):
        code = missing
    raise Worded(400, joi_message(first), code)


async def sign_up(request: web.Request) -> web.Response:
    body = await _valid_body(request, SIGN_UP)
    await request.app[keys.AUTH].service.register(
        Caller.of(request),
        display_name=body["userName"],
        email=body["email"],
        password=body["password"],
        password_field=PASSWORD_LABEL,
    )
    return web.json_response(
        {"error": False, "message": "Account created sucessfully"}, status=201
    )


async def log_in(request: web.Request) -> web.Response:
    body = await _valid_body(request, LOG_IN)
    signed_in = await request.app[keys.AUTH].service.signin(
        Caller.of(request), email=body["email"], password=body["password"]
    )
    return web.json_response(
        {
            "error": False,
            "accessToken": signed_in.access_token,
            "refreshToken": signed_in.refresh_token,
            "message": "Logged in sucessfully",
        }
    )


async def refresh(request: web.Request) -> web.Response:
    """No refresh token in the answer, as in the seed: see the module's docstring."""
    body = await _valid_body(request, REFRESH, ErrorCode.REFRESH_MISSING)
    refreshed = await request.app[keys.AUTH].service.refresh(
        Caller.of(request), body["refreshToken"]
    )
    return web.json_response(
        {
            "error": False,
            "accessToken": refreshed.access_token,
            "message": "Access token created successfully",
        }
    )


async def log_out(request: web.Request) -> web.Response:
    """Idempotent, as in the seed: an unknown or revoked token gets the same answer."""
    body = await _valid_body(request, REFRESH, ErrorCode.REFRESH_MISSING)
    await request.app[keys.AUTH].service.signout(
        Caller.of(request), body["refreshToken"]
    )
    return web.json_response({"error": False, "message": "Logged Out Sucessfully"})


def render(request: web.Request, error: ApiError) -> web.Response:
    """`{"error": true, "message", "code"}` in the seed's terms."""
    error = restate(error, SEED_TERMS)
    body = {"error": True, "message": error.message, "code": str(error.code)}
    return web.json_response(body, status=error.status, headers=error.headers)


# Shapes, for the OpenAPI document.


class CyberwolvesError(BaseModel):
    error: Literal[True]
    message: str
    code: str


class CyberwolvesMessage(BaseModel):
    error: Literal[False]
    message: str


class CyberwolvesLoggedIn(BaseModel):
    error: Literal[False]
    accessToken: str
    refreshToken: str
    message: str


class CyberwolvesRefreshed(BaseModel):
    error: Literal[False]
    accessToken: str
    message: str


# A route of this dialect: in the OpenAPI document under its tag, errors in its shape.
_route = partial(Route, tag="cyberwolves", group=GROUP, error_body=CyberwolvesError)
_REFRESH_BODY = body_model("CyberwolvesRefreshBody", REFRESH, refuse_unknown=True)
ROUTES = (
    _route(
        "POST",
        "/api/signUp",
        sign_up,
        "Create an account (cyberwolves)",
        (
            Answer(201, "Account created", CyberwolvesMessage),
            Answer(400, "Invalid body, or the email is in use", CyberwolvesError),
        ),
        body=body_model("CyberwolvesSignUpBody", SIGN_UP, refuse_unknown=True),
        rate_limited=True,
    ),
    _route(
        "POST",
        "/api/logIn",
        log_in,
        "Log in by email: a new session and its tokens (cyberwolves)",
        (
            Answer(200, "Logged in", CyberwolvesLoggedIn),
            Answer(401, "Invalid email or password", CyberwolvesError),
        ),
        body=body_model("CyberwolvesLogInBody", LOG_IN, refuse_unknown=True),
        rate_limited=True,
    ),
    _route(
        "POST",
        "/api/refreshToken",
        refresh,
        "A new access token for a refresh token (cyberwolves)",
        (
            Answer(200, "Access token created", CyberwolvesRefreshed),
            Answer(400, "Invalid body, or the refresh token refused", CyberwolvesError),
        ),
        body=_REFRESH_BODY,
        rate_limited=True,
    ),
    _route(
        "DELETE",
        "/api/refreshToken",
        log_out,
        "Log out: revoke the refresh token's session; idempotent (cyberwolves)",
        (
            Answer(
                200, "Logged out (also when already logged out)", CyberwolvesMessage
            ),
            Answer(400, "Invalid body", CyberwolvesError),
        ),
        body=_REFRESH_BODY,
    ),
)
ROUTE_SET = RouteSet("cyberwolves", ROUTES, render=render)
