"""The route tables: every route with the role it needs, its body and its answers. `Auth`
mounts routes from them and the OpenAPI document is generated from what it mounted.

`ROUTES` is the core contract (the bezkoder seeds). A `RouteSet` is one API over the same
service (the core, or a seed dialect): its routes, how it reads the access token and how
it renders errors. Each route belongs to a group that a host app mounts or leaves out
(`Auth.setup(..., groups=...)`); the `auth` and `users` groups move with the prefixes a host
chooses. The `demo` group (the demo page at `/`, `server.demo_page`) is mounted by the
standalone server only and left out of the OpenAPI document."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from . import schemas, websocket
from .errors import Handler
from .guards import Role
from .handlers import admin, auth, content, demo, meta, ops, sessions, users
from .middleware import ErrorRenderer, TokenReader, read_access_token, render_error

AUTH_PREFIX = "/api/auth"
USERS_PREFIX = "/api/users"


@dataclass(frozen=True)
class Answer:
    """One documented response: a JSON model, plain text (model None), or any object."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    text: bool = False
    empty: bool = False  # no body at all
    media_type: str | None = None  # a text body of this type (model None)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    answers: tuple[Answer, ...]
    role: Role | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None  # its query parameters, all optional
    rate_limited: bool = False
    tag: str = "auth"
    group: str = "auth"
    read_token: TokenReader | None = None  # instead of the route set's
    documented: bool = True  # in the OpenAPI document (the demo page's files are not)
    error_body: type[BaseModel] = schemas.ErrorBody  # a dialect's error shape


@dataclass(frozen=True)
class RouteSet:
    """One API over the service: its routes, how it reads the access token of guarded
    routes, and how it renders errors."""

    name: str
    routes: tuple[Route, ...]
    render: ErrorRenderer = render_error
    read_token: TokenReader = read_access_token


def _text(content: str) -> tuple[Answer, ...]:
    return (Answer(200, content, text=True),)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/api/test/all",
        content.public_board,
        "Public content",
        _text("Public Content."),
        tag="content",
        group="content",
    ),
    Route(
        "GET",
        "/api/test/user",
        content.user_board,
        "Content for any signed-in user",
        _text("User Content."),
        role=Role.USER,
        tag="content",
        group="content",
    ),
    Route(
        "GET",
        "/api/test/mod",
        content.moderator_board,
        "Content for moderators",
        _text("Moderator Content."),
        role=Role.MODERATOR,
        tag="content",
        group="content",
    ),
    Route(
        "GET",
        "/api/test/admin",
        content.admin_board,
        "Content for admins",
        _text("Admin Content."),
        role=Role.ADMIN,
        tag="content",
        group="content",
    ),
    Route(
        "POST",
        "/api/auth/signup",
        auth.signup,
        "Register a user (an admin's token grants roles)",
        (
            Answer(201, "Registered", schemas.SignupResult),
            Answer(403, "Roles beyond user without an admin token", schemas.ErrorBody),
            Answer(409, "Username or email already in use", schemas.ErrorBody),
        ),
        body=schemas.SignupBody,
        rate_limited=True,
    ),
    Route(
        "POST",
        "/api/auth/signin",
        auth.signin,
        "Sign in: a new session and its tokens (with cookie: true, the refresh token in"
        " an HttpOnly session cookie)",
        (
            Answer(200, "Signed in", schemas.SigninAnswer),
            Answer(401, "Invalid username or password", schemas.ErrorBody),
        ),
        body=schemas.SigninBody,
        rate_limited=True,
    ),
    Route(
        "POST",
        "/api/auth/refreshtoken",
        auth.refresh,
        "New access token (and, with rotation, the next refresh token); without a"
        " body token, from the session cookie with X-CSRF-Token",
        (
            Answer(200, "Refreshed", schemas.RefreshAnswer),
            Answer(
                403,
                "Refresh token missing, unknown, expired, reused or revoked; cookie"
                " mode: CSRF check failed",
                schemas.ErrorBody,
            ),
        ),
        body=schemas.RefreshBody,
        rate_limited=True,
    ),
    Route(
        "POST",
        "/api/auth/signout",
        auth.signout,
        "Revoke the refresh token's session; without a body token, the session"
        " cookie's (with X-CSRF-Token), and expire the cookie",
        (
            Answer(
                200, "Signed out (also when already signed out)", schemas.MessageBody
            ),
            Answer(
                403,
                "Refresh token missing; cookie mode: CSRF check failed",
                schemas.ErrorBody,
            ),
        ),
        body=schemas.RefreshBody,
    ),
    Route(
        "POST",
        "/api/auth/password",
        auth.change_password,
        "Change the password; every other session is revoked",
        (Answer(200, "Password changed", schemas.MessageBody),),
        role=Role.USER,
        body=schemas.PasswordChangeBody,
        rate_limited=True,
    ),
    Route(
        "GET",
        "/api/auth/sessions",
        sessions.list_sessions,
        "The caller's live sessions (devices), newest first",
        (Answer(200, "The sessions", schemas.SessionList),),
        role=Role.USER,
        tag="sessions",
    ),
    Route(
        "DELETE",
        "/api/auth/sessions/{id}",
        sessions.revoke_session,
        "Revoke one of the caller's sessions (the current one too: a sign-out)",
        (
            Answer(200, "Revoked", schemas.MessageBody),
            Answer(
                404,
                "Unknown, another user's, or no longer live (Session not found.)",
                schemas.ErrorBody,
            ),
        ),
        role=Role.USER,
        tag="sessions",
    ),
    Route(
        "DELETE",
        "/api/auth/sessions",
        sessions.revoke_other_sessions,
        "Revoke every session of the caller but the current one",
        (Answer(200, "Revoked; how many", schemas.OthersRevoked),),
        role=Role.USER,
        tag="sessions",
    ),
    Route(
        "GET",
        "/api/users/me",
        users.me,
        "The signed-in user",
        (Answer(200, "The user", schemas.UserRecord),),
        role=Role.USER,
        tag="users",
        group="users",
    ),
    Route(
        "GET",
        "/api/users",
        admin.list_users,
        "Users by creation time, a page at a time, optionally searched (admin)",
        (
            Answer(200, "A page of users", schemas.UsersPage),
            Answer(400, "Bad limit or cursor (validation_error)", schemas.ErrorBody),
        ),
        role=Role.ADMIN,
        query=schemas.UserListQuery,
        tag="users",
        group="users",
    ),
    Route(
        "GET",
        "/api/users/{id}",
        admin.get_user,
        "One user (admin)",
        (
            Answer(200, "The user", schemas.UserRecord),
            Answer(404, "No such user", schemas.ErrorBody),
        ),
        role=Role.ADMIN,
        tag="users",
        group="users",
    ),
    Route(
        "PATCH",
        "/api/users/{id}",
        admin.update_user,
        "Change a user's roles and/or disabled flag (admin); disabling or taking a"
        " role away revokes every session of the user",
        (
            Answer(200, "The user as it now is", schemas.UserRecord),
            Answer(404, "No such user", schemas.ErrorBody),
            Answer(409, "The only enabled admin would be lost", schemas.ErrorBody),
        ),
        role=Role.ADMIN,
        body=schemas.UserPatchBody,
        tag="users",
        group="users",
    ),
    Route(
        "DELETE",
        "/api/users/{id}",
        users.delete_user,
        "Delete a user and revoke its sessions (admin)",
        (
            Answer(200, "Deleted", schemas.MessageBody),
            Answer(404, "No such user", schemas.ErrorBody),
            Answer(409, "The only enabled admin would be lost", schemas.ErrorBody),
        ),
        role=Role.ADMIN,
        tag="users",
        group="users",
    ),
    Route(
        "GET",
        "/api/ws",
        websocket.echo,
        "A WebSocket echo that is closed (4401) when its session ends",
        (
            Answer(101, "Switching to the WebSocket protocol", empty=True),
            Answer(400, "Not a WebSocket upgrade request", schemas.ErrorBody),
        ),
        role=Role.USER,
        tag="websocket",
        group="ws",
        read_token=websocket.read_socket_token,
    ),
    Route(
        "GET",
        "/.well-known/jwks.json",
        meta.jwks,
        "Public keys that verify access tokens",
        (Answer(200, "JSON Web Key Set", schemas.Jwks),),
        tag="meta",
        group="meta",
    ),
    Route(
        "GET",
        "/api/openapi.json",
        meta.openapi,
        "This document",
        (Answer(200, "OpenAPI 3.1 document"),),
        tag="meta",
        group="meta",
    ),
    Route(
        "GET",
        "/api/health",
        ops.health,
        "Whether this process can serve: the storage answers within 2 seconds",
        (
            Answer(200, "Healthy", schemas.Healthy),
            Answer(503, "The storage does not answer", schemas.Unhealthy),
        ),
        tag="operations",
        group="health",
    ),
    Route(
        "GET",
        "/metrics",
        ops.metrics,
        "Prometheus metrics, the same totals whichever worker answers"
        " (metrics.enabled)",
        (Answer(200, "Prometheus text format", media_type="text/plain"),),
        tag="operations",
        group="metrics",
    ),
)

# The demo page (`server.demo_page`), mounted by the standalone server.
DEMO_ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/",
        demo.page,
        "The demo page",
        (Answer(200, "HTML"),),
        tag="demo",
        group="demo",
        documented=False,
    ),
    Route(
        "GET",
        "/static/{name}",
        demo.static_file,
        "The demo page's scripts and styles",
        (Answer(200, "A static file"),),
        tag="demo",
        group="demo",
        documented=False,
    ),
)

CORE = RouteSet("bezkoder", ROUTES + DEMO_ROUTES)
