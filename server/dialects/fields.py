"""The seed dialects' request bodies, checked field by field in their schema's order.

Each dialect declares its bodies as a tuple of `Field`s once: the checks run from it and
the OpenAPI model is generated from it. The checks find what is wrong (`Failure`); each
dialect words it its own way (Joi for cyberwolves, zod for wpcodevo). The core's JSON
hygiene (server/bodies.py) has run before: the body is a JSON object without duplicate
keys or NaN.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic import Field as Declared

from ..schemas import MAX_PASSWORD_FIELD, Email
from ..settings import PasswordSettings

NAME_MAX = 128
TEXT_MAX = MAX_PASSWORD_FIELD
_EMAIL = TypeAdapter(Email)


class Rule(StrEnum):
    TEXT = "text"  # a non-empty string
    NAME = "name"  # a display name: free text, not blank, no control characters
    EMAIL = "email"  # a valid address, by the core's rule
    NEW_PASSWORD = "new_password"  # passwords.min_length to max_length characters
    CONFIRM = "confirm"  # equal to the field `same_as`


class Problem(StrEnum):
    REQUIRED = "required"
    NOT_STRING = "not_string"
    EMPTY = "empty"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    CONTROL = "control"
    INVALID_EMAIL = "invalid_email"
    MISMATCH = "mismatch"
    UNKNOWN = "unknown"  # a key the schema does not have


@dataclass(frozen=True)
class Field:
    key: str
    label: str  # how the dialect names the field in messages
    rule: Rule = Rule.TEXT
    same_as: str | None = None


@dataclass(frozen=True)
class Failure:
    key: str
    label: str
    problem: Problem
    limit: int | None = None  # the length bound for TOO_SHORT and TOO_LONG


def failures(
    body: Mapping[str, Any],
    fields: Sequence[Field],
    passwords: PasswordSettings,
    *,
    refuse_unknown: bool,
) -> list[Failure]:
    """Every failure, in schema order, then (when refused) the unknown keys in the
    body's order."""
    found = [
        Failure(field.key, field.label, *problem)
        for field in fields
        if (problem := _check(field, body, passwords)) is not None
    ]
    if refuse_unknown:
        known = {field.key for field in fields}
        found.extend(
            Failure(key, key, Problem.UNKNOWN) for key in body if key not in known
        )
    return found


def _check(
    field: Field, body: Mapping[str, Any], passwords: PasswordSettings
) -> tuple[Problem, int | None] | None:
    if field.key not in body:
        return Problem.REQUIRED, None
    value = body[field.key]
    if not isinstance(value, str):
        return Problem.NOT_STRING, None
    if value == "" or (field.rule is Rule.NAME and not value.strip()):
        return Problem.EMPTY, None
    if field.rule is Rule.NEW_PASSWORD:
        return _password_length(value, passwords)
    limit = NAME_MAX if field.rule is Rule.NAME else TEXT_MAX
    if len(value) > limit:
        return Problem.TOO_LONG, limit
    if field.rule is Rule.NAME and any(map(_is_control, value)):
        return Problem.CONTROL, None
    if field.rule is Rule.EMAIL and not _is_email(value):
        return Problem.INVALID_EMAIL, None
    if field.rule is Rule.CONFIRM and value != body.get(field.same_as or ""):
        return Problem.MISMATCH, None
    return None


def _password_length(
    value: str, passwords: PasswordSettings
) -> tuple[Problem, int | None] | None:
    """API.md's rule (the service checks it again, and the strength, when hashing)."""
    if len(value) < passwords.min_length:
        return Problem.TOO_SHORT, passwords.min_length
    if len(value) > passwords.max_length:
        return Problem.TOO_LONG, passwords.max_length
    return None


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _is_email(value: str) -> bool:
    try:
        _EMAIL.validate_python(value)
    except ValidationError:
        return False
    return True


def body_model(
    name: str, fields: Sequence[Field], *, refuse_unknown: bool
) -> type[BaseModel]:
    """The OpenAPI model of a body: every field a required string."""
    declared: dict[str, Any] = {
        field.key: (Annotated[str, _declaration(field)], ...) for field in fields
    }
    config = ConfigDict(extra="forbid" if refuse_unknown else "ignore")
    return create_model(name, __config__=config, **declared)


def _declaration(field: Field) -> Any:
    if field.rule is Rule.EMAIL:
        return Declared(
            min_length=1, max_length=254, json_schema_extra={"format": "email"}
        )
    if field.rule is Rule.NEW_PASSWORD:
        return Declared(
            min_length=1,
            max_length=MAX_PASSWORD_FIELD,
            description="passwords.min_length to passwords.max_length characters",
        )
    if field.rule is Rule.CONFIRM:
        return Declared(min_length=1, description=f"Equal to {field.same_as}")
    if field.rule is Rule.NAME:
        return Declared(min_length=1, max_length=NAME_MAX, description="Any text")
    return Declared(min_length=1, max_length=TEXT_MAX)
