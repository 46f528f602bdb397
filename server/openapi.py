"""The OpenAPI 3.1 document, generated from the routes an Auth mounted and the same
pydantic models that validate requests, so the document cannot drift from the server."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import schemas
from .routes import Answer, Route
from .settings import PasswordSettings

REF = "#/components/schemas/{model}"
ERROR = schemas.ErrorBody
SECURITY = [{"accessToken": []}, {"bearerAuth": []}]
PATH_PARAMETER = re.compile(r"{(\w+)}")


def _models(routes: Sequence[Route]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ErrorBody": ERROR}
    for route in routes:
        answers = (answer.model for answer in route.answers)
        for model in [route.body, route.error_body, *answers]:
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _content(answer: Answer) -> dict[str, Any]:
    if answer.media_type:
        return {answer.media_type: {"schema": {"type": "string"}}}
    if answer.text:
        return {
            "text/plain": {"schema": {"type": "string", "const": answer.description}}
        }
    schema = _ref(answer.model) if answer.model else {"type": "object"}
    return {"application/json": {"schema": schema}}


def _error(description: str, model: type[BaseModel] = ERROR) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(model)}},
    }


def _implied_errors(route: Route) -> dict[str, dict[str, Any]]:
    """Errors every route of a kind can answer, beyond those it declares, in the shape
    of the route's API."""
    implied: dict[str, dict[str, Any]] = {}
    shape = route.error_body
    if route.query is not None:
        implied["400"] = _error("Invalid query parameter (validation_error)", shape)
    if route.body is not None:
        implied["400"] = _error(
            "Invalid body (validation_error, unknown_role, ...)", shape
        )
        implied["413"] = _error("Body larger than server.max_body_bytes", shape)
        implied["415"] = _error("Body is not application/json", shape)
    if route.role is not None:
        implied["401"] = _error("Access token expired, invalid or revoked", shape)
        implied["403"] = _error("No token provided, or the role is missing", shape)
    if route.rate_limited:
        implied["429"] = {
            **_error("Too many requests", shape),
            "headers": {"Retry-After": {"schema": {"type": "string"}}},
        }
    return implied


def _operation(route: Route) -> dict[str, Any]:
    responses = _implied_errors(route)
    for answer in route.answers:
        responses[str(answer.status)] = {"description": answer.description}
        if not answer.empty:
            responses[str(answer.status)]["content"] = _content(answer)
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": _operation_id(route),
        "tags": [route.tag],
        "responses": dict(sorted(responses.items())),
    }
    if route.body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(route.body)}},
        }
    if route.role is not None:
        operation["security"] = SECURITY
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAMETER.findall(route.path)
    ]
    if route.query is not None:
        parameters.extend(_query_parameters(route.query))
    if parameters:
        operation["parameters"] = parameters
    return operation


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as optional query parameters, their schemas inline."""
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": field}
        for name, field in schema["properties"].items()
    ]


def _apply_password_rules(
    definitions: dict[str, Any], rules: PasswordSettings | None
) -> None:
    """Password lengths are settings: document the configured ones."""
    if rules is None:
        return
    for model, field in (
        ("SignupBody", "password"),
        ("PasswordChangeBody", "newPassword"),
    ):
        if model not in definitions:
            continue  # not mounted (server.dialects without bezkoder)
        schema = definitions[model]["properties"][field]
        schema.update(minLength=rules.min_length, maxLength=rules.max_length)


def _operation_id(route: Route) -> str:
    """Unique because a method and path are mounted once: `post_api_auth_signin`."""
    words = re.findall(r"[A-Za-z0-9]+", route.path)
    return "_".join([route.method.lower(), *words])


def build_document(
    routes: Sequence[Route], rules: PasswordSettings | None = None
) -> dict[str, Any]:
    routes = [route for route in routes if route.documented]
    _, definitions = models_json_schema(
        [(model, "validation") for model in _models(routes)], ref_template=REF
    )
    _apply_password_rules(definitions.get("$defs", {}), rules)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "JWT auth server",
            "version": "1.0.0",
            "description": "Sign-up, sign-in, rotating refresh tokens and role-gated routes.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "accessToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-access-token",
                },
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                },
            },
        },
    }
    return document
