"""Reading JSON request bodies defensively: media type, charset, UTF-8, size
(`server.max_body_bytes`), nesting (before parsing), duplicate keys, NaN, then the model. Every
failure is a 4xx."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from . import keys
from .errors import (
    ApiError,
    payload_too_large,
    unsupported_media_type,
    validation_error,
)
from .schemas import FIELD_RULES

ModelT = TypeVar("ModelT", bound=BaseModel)
JSON_TYPES = ("application/json",)
UTF8 = ("utf-8", "utf8")
# No request of the contract nests deeper than 3; 32 leaves room for embedders' models
# while keeping a hostile body from costing a deep recursion in the parser.
MAX_DEPTH = 32
TOO_DEEP = f"Request body is nested more than {MAX_DEPTH} levels deep"
# A JSON string (closed or running to the end: never a retry from inside it) or one
# bracket. Unrolled so that it runs in linear time whatever the input.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")


async def read_body(request: web.Request, model: type[ModelT]) -> ModelT:
    """The body as `model` (see `read_object`)."""
    data = await read_object(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, for views that validate it their own way (the seed
    dialects). An empty body reads as `{}` (the seeds' clients post none to some
    routes); anything else must be a UTF-8 JSON object sent as application/json, which
    also keeps cross-site HTML forms from posting here."""
    raw = await _read_limited(
        request, request.app[keys.AUTH].settings.server.max_body_bytes
    )
    data: Any = {} if not raw.strip() else _parse(request, raw)
    if not isinstance(data, dict):
        raise validation_error("Request body must be a JSON object")
    return data


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, at most `limit` bytes (413 beyond), whatever the host app's own
    client_max_size: embedded, the auth routes keep the server's limit, larger or
    smaller than the host's, so the stream is read here rather than by `request.read()`
    (which applies the host's)."""
    if request.content_length is not None and request.content_length > limit:
        raise payload_too_large(limit)
    if request.body_exists and not request.can_read_body:
        # A host middleware read the body first; aiohttp kept it.
        raw = await request.read()
        if len(raw) > limit:
            raise payload_too_large(limit)
        return raw
    chunks, size = [], 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise payload_too_large(limit)
    return b"".join(chunks)


def _parse(request: web.Request, raw: bytes) -> Any:
    if request.content_type not in JSON_TYPES:
        raise unsupported_media_type()
    if request.charset and request.charset.lower() not in UTF8:
        raise validation_error("Request body must be UTF-8 encoded JSON")
    if too_deep(raw):
        raise validation_error(TOO_DEEP)
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_unique_keys, parse_constant=_no_constants
        )
    except UnicodeDecodeError:
        raise validation_error("Request body is not valid UTF-8") from None
    except ApiError:
        raise
    except (ValueError, RecursionError):
        raise validation_error("Request body is not valid JSON") from None


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether brackets outside strings nest deeper than `limit`: one linear pass in the
    regex engine, without parsing, recursion or a Python step per character. Bodies
    with no more openers than the limit (nearly all) are not even scanned. Malformed
    text is left to the parser to refuse."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        char = raw[match.start()]
        if char in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif char != 0x22:  # a closing bracket, not a string
            depth -= 1
    return False


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse duplicate keys: parsers disagree on which copy wins, which is how
    privilege checks get bypassed."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise validation_error(f"Duplicate key '{key}' in request body")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise validation_error(f"{name} is not allowed in JSON")


def _first_error(exc: ValidationError) -> ApiError:
    return validation_error(first_error_message(exc))


def first_error_message(exc: ValidationError) -> str:
    """A message naming the field, without echoing the submitted value."""
    error = exc.errors(include_url=False)[0]
    location = [str(part) for part in error["loc"]]
    field = location[0] if location else ""
    if error["type"] == "missing":
        return f"{field} is required"
    if error["type"] == "string_too_long" and len(location) == 1:
        return f"{field} must be at most {error['ctx']['max_length']} characters"
    if field in FIELD_RULES:
        return FIELD_RULES[field]
    return str(error["msg"]).removeprefix("Value error, ")
