"""Every AppKey and RequestKey of the server, nothing else."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from storage import Storage

from .clientaddr import Network
from .passwords import PasswordHasher
from .ratelimit import RateLimiter
from .revocation import RevocationSet
from .settings import Settings
from .tokens import AccessClaims, AccessTokens, RefreshTokens

SETTINGS = web.AppKey("settings", Settings)
STORAGE = web.AppKey("storage", Storage)
ACCESS_TOKENS = web.AppKey("access_tokens", AccessTokens)
REFRESH_TOKENS = web.AppKey("refresh_tokens", RefreshTokens)
PASSWORDS = web.AppKey("passwords", PasswordHasher)
REVOCATIONS = web.AppKey("revocations", RevocationSet)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
OPENAPI = web.AppKey("openapi", dict[str, Any])
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[Network, ...])

CLAIMS = web.RequestKey("claims", AccessClaims)
CLIENT_ADDRESS = web.RequestKey("client_address", str)
