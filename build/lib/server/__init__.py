"""A JWT auth server on aiohttp, usable on its own (`python run.py`) or embedded in a
host app:

    from server import Auth, load_settings

    auth = Auth(load_settings())
    auth.setup(app, prefix="/api/auth")

    @auth.requires("admin")
    async def handler(request): ...
"""

from .app import create_app
from .auth import EMBEDDED_GROUPS, STANDALONE_GROUPS, Auth
from .errors import ApiError, ErrorCode
from .guards import Role, current_claims, requires
from .settings import Settings, SettingsError, load_settings, settings_from_mapping
from .tokens import AccessClaims

__all__ = [
    "EMBEDDED_GROUPS",
    "STANDALONE_GROUPS",
    "AccessClaims",
    "ApiError",
    "Auth",
    "ErrorCode",
    "Role",
    "Settings",
    "SettingsError",
    "create_app",
    "current_claims",
    "load_settings",
    "requires",
    "settings_from_mapping",
]
