"""Every AppKey and RequestKey of the server, nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .clientaddr import Network
from .tokens import AccessClaims

if TYPE_CHECKING:
    from .auth import Auth

# The Auth object installed into an app by `Auth.setup`: settings, storage, the service.
AUTH: web.AppKey[Auth] = web.AppKey("auth")
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])

CLAIMS = web.RequestKey("claims", AccessClaims)
CLIENT_ADDRESS = web.RequestKey("client_address", str)
