"""The seed tutorials' APIs ("dialects"): other views over the one service.

`server.dialects` lists the APIs to serve, in order of precedence: `bezkoder` is API.md's
(the core route set), `cyberwolves` and `wpcodevo` are the other two seeds'. Each dialect
module is a `RouteSet`: its routes, its response shapes, how it reads the access token and
how it renders errors, over `AuthService`, so users, sessions, rotation, reuse detection,
rate limits and events are shared by all of them. Where two listed dialects claim one
method and path, the first listed answers (`Auth._mount` keeps the first).

Dialect routes are in the `dialect` group. Listing a dialect in the settings is the
opt-in, so that group is among the groups a host app mounts by default too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import import_module

from ..routes import CORE, RouteSet
from ..settings import Settings

GROUP = "dialect"
# The groups that make up the bezkoder API (the demo page calls it); the core's other
# routes (the JWKS, the OpenAPI document, the WebSocket) belong to the server whichever
# APIs it speaks.
CORE_API_GROUPS = frozenset({"auth", "users", "content", "demo"})
SERVER_ROUTES = RouteSet(
    "server",
    tuple(route for route in CORE.routes if route.group not in CORE_API_GROUPS),
)


def _module_route_set(name: str) -> Callable[[], RouteSet]:
    def load() -> RouteSet:
        return import_module(f"{__name__}.{name}").ROUTE_SET

    return load


# Name -> how to get its RouteSet; a dialect's module is imported only when listed.
REGISTRY: dict[str, Callable[[], RouteSet]] = {
    "bezkoder": lambda: CORE,
    "cyberwolves": _module_route_set("cyberwolves"),
    "wpcodevo": _module_route_set("wpcodevo"),
}


def route_set(name: str) -> RouteSet:
    return REGISTRY[name]()


def route_sets(names: Sequence[str]) -> list[RouteSet]:
    """The route sets to mount, in precedence order. Without `bezkoder`, its API is
    left out but the server's own documents stay."""
    sets = [route_set(name) for name in names]
    if "bezkoder" not in names:
        sets.append(SERVER_ROUTES)
    return sets


def startup_warnings(settings: Settings) -> list[str]:
    """What an operator must know about the dialects chosen."""
    tokens = settings.tokens
    if (
        "cyberwolves" in settings.server.dialects
        and tokens.rotate_refresh
        and tokens.strict_rotation
    ):
        return [
            "server.dialects has cyberwolves and tokens.strict_rotation is true:"
            " cyberwolves clients keep their first refresh token (its refresh answer"
            " has no new one), so they will be logged out at their second refresh"
        ]
    return []
