"""A Python client for the JWT auth server: sign-up, sign-in, authenticated calls that
refresh the access token on a 401 (one refresh in flight however many calls fail at once,
the rotated refresh token adopted, each call retried once), and sign-out.

Depends on aiohttp only; it never imports the server's packages."""

from authclient.client import AuthClient
from authclient.errors import ApiError, AuthClientError, NotSignedIn, SessionExpired
from authclient.models import Response, Tokens, User

__all__ = [
    "ApiError",
    "AuthClient",
    "AuthClientError",
    "NotSignedIn",
    "Response",
    "SessionExpired",
    "Tokens",
    "User",
]
