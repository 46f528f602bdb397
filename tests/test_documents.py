"""The JWKS and the OpenAPI document."""

from __future__ import annotations

from server.routes import ROUTES
from tests.conftest import Api


async def test_jwks_is_empty_with_hs256(api: Api) -> None:
    response = await api.get("/.well-known/jwks.json")
    assert (response.status, await response.json()) == (200, {"keys": []})


async def test_openapi_describes_every_route(api: Api) -> None:
    response = await api.get("/api/openapi.json")
    document = await response.json()
    assert response.status == 200
    assert document["openapi"] == "3.1.0"
    described = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
    }
    assert described == {(route.method, route.path) for route in ROUTES}
    signup = document["paths"]["/api/auth/signup"]["post"]
    assert set(signup["responses"]) == {"201", "400", "403", "409", "413", "415", "429"}
    schema = document["components"]["schemas"]["SignupBody"]
    assert schema["required"] == ["username", "email", "password"]
    assert schema["properties"]["username"]["pattern"] == "^[A-Za-z0-9_.-]{3,32}$"
