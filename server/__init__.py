"""A JWT auth server on aiohttp. The embedding API: build the app, or install the server
into yours and guard your own handlers by role.

    from server import Role, create_app, load_settings, requires
"""

from .app import create_app, setup
from .guards import Role, current_claims, requires
from .settings import Settings, SettingsError, load_settings

__all__ = [
    "Role",
    "Settings",
    "SettingsError",
    "create_app",
    "current_claims",
    "load_settings",
    "requires",
    "setup",
]
