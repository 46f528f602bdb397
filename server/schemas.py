"""Request bodies, declared once: the server validates with these models and the
OpenAPI document is generated from them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    field_validator,
    model_validator,
)

from .roles import ROLE_NAMES

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"
USERS_LIMIT_MAX = 100
USERS_LIMIT_DEFAULT = 50
MAX_QUERY_TEXT = 254  # `q`: an email address is at most this long
MAX_PASSWORD_FIELD = 1024  # far above passwords.max_length: the rule itself says why
MAX_TOKEN_FIELD = 512


def _valid_email(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return value


Email = Annotated[
    str,
    Field(max_length=254, json_schema_extra={"format": "email"}),
    AfterValidator(_valid_email),
]
# Documented as an enum; validated by the handler, which answers `unknown_role`.
RoleName = Annotated[
    str, Field(max_length=64, json_schema_extra={"enum": list(ROLE_NAMES)})
]
Password = Annotated[str, Field(max_length=MAX_PASSWORD_FIELD)]


class _Body(BaseModel):
    """Strict types (no "1" for 1), unknown fields ignored as the seeds' clients expect."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class SignupBody(_Body):
    username: Annotated[str, Field(pattern=USERNAME_PATTERN)]
    email: Email
    password: Password
    roles: Annotated[list[RoleName], Field(max_length=16)] | None = None


class SigninBody(_Body):
    """Either `username` (the seeds) or `email`, with the password."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": ["username"]}, {"required": ["email"]}]
        }
    )

    username: Annotated[str, Field(min_length=1, max_length=254)] | None = None
    email: Annotated[str, Field(min_length=1, max_length=254)] | None = None
    password: Password
    # Cookie mode (browsers): the refresh token goes into an HttpOnly session cookie.
    cookie: bool | None = None

    @model_validator(mode="after")
    def _one_login(self) -> SigninBody:
        if self.username is None and self.email is None:
            raise ValueError("username or email is required")
        return self


class RefreshBody(_Body):
    refreshToken: Annotated[str, Field(max_length=MAX_TOKEN_FIELD)] | None = None


class PasswordChangeBody(_Body):
    currentPassword: Password
    newPassword: Password


class UserPatchBody(_Body):
    """An admin's change to a user: at least one of the two."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": ["roles"]}, {"required": ["disabled"]}]
        }
    )

    roles: Annotated[list[RoleName], Field(max_length=16)] | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> UserPatchBody:
        if self.roles is None and self.disabled is None:
            raise ValueError("roles or disabled is required")
        return self


class UserListQuery(BaseModel):
    """`GET /api/users` query parameters (strings on the wire; unknown ones ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    limit: Annotated[int, Field(ge=1, le=USERS_LIMIT_MAX)] = USERS_LIMIT_DEFAULT
    cursor: Annotated[str, Field(max_length=256)] = ""
    q: Annotated[str, Field(max_length=MAX_QUERY_TEXT)] = ""

    @field_validator("limit", mode="before")
    @classmethod
    def _digits(cls, value: object) -> object:
        """Plain decimal digits only: not pydantic's lax "+5", " 5", "1_0" or "5.0"."""
        if isinstance(value, str) and not (
            value.isascii() and value.isdigit() and len(value) <= 3
        ):
            raise ValueError("not a number")
        return value


FIELD_RULES = {
    "username": "username must be 3 to 32 characters: letters, digits, '_', '.' or '-'",
    "email": "email must be a valid email address",
    "password": "password must be a string",
    "roles": "roles must be a list of role names",
    "refreshToken": "refreshToken must be a string",
    "currentPassword": "currentPassword must be a string",
    "newPassword": "newPassword must be a string",
    "cookie": "cookie must be true or false",
    "disabled": "disabled must be true or false",
    "limit": f"limit must be an integer from 1 to {USERS_LIMIT_MAX}",
}


# Responses: declared for the OpenAPI document.


class ErrorBody(BaseModel):
    message: str
    code: str


class MessageBody(BaseModel):
    message: str


class SignupResult(BaseModel):
    message: str
    id: str


class TokenPair(BaseModel):
    accessToken: str
    refreshToken: str
    tokenType: Literal["Bearer"]
    expiresIn: int


class SigninResult(TokenPair):
    id: str
    username: str
    email: str
    roles: list[Literal["ROLE_USER", "ROLE_MODERATOR", "ROLE_ADMIN"]]


class CookieTokens(BaseModel):
    """Cookie mode: the refresh token is in the session cookie, never in a body; the
    CSRF token goes back in `X-CSRF-Token` when the cookie is spent."""

    accessToken: str
    tokenType: Literal["Bearer"]
    expiresIn: int
    csrfToken: str


class CookieSigninResult(CookieTokens):
    id: str
    username: str
    email: str
    roles: list[Literal["ROLE_USER", "ROLE_MODERATOR", "ROLE_ADMIN"]]


class SigninAnswer(RootModel[SigninResult | CookieSigninResult]):
    """Body mode (the refresh token in the body) or cookie mode (`"cookie": true`)."""


class RefreshAnswer(RootModel[TokenPair | CookieTokens]):
    """Body mode, or cookie mode when the body has no refresh token."""


class UserRecord(BaseModel):
    """API.md's `<user>`."""

    id: str
    username: str
    email: str
    roles: list[Literal["ROLE_USER", "ROLE_MODERATOR", "ROLE_ADMIN"]]
    disabled: bool
    createdAt: str


class UsersPage(BaseModel):
    users: list[UserRecord]
    next: str | None = Field(
        description="The cursor of the next page (pass it as `cursor`); null on the"
        " last page"
    )


class SessionRecord(BaseModel):
    """A live session (one sign-in on one device)."""

    id: str
    current: bool = Field(description="The session of the access token used")
    createdAt: str
    lastUsedAt: str = Field(description="The sign-in or the latest refresh")
    expiresAt: str = Field(description="When its refresh token stops working")
    userAgent: str | None
    ip: str | None


class SessionList(BaseModel):
    sessions: list[SessionRecord]


class OthersRevoked(BaseModel):
    message: str
    revoked: int


class Jwks(BaseModel):
    keys: list[dict[str, Any]]


class Healthy(BaseModel):
    status: Literal["ok"]


class Unhealthy(BaseModel):
    status: Literal["unavailable"]
    message: str
