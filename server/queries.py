"""Reading query parameters with the pydantic model that documents them: every failure is
400 `validation_error` naming the parameter, never a 5xx."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .bodies import first_error_message
from .errors import validation_error

ModelT = TypeVar("ModelT", bound=BaseModel)


def read_query(request: web.Request, model: type[ModelT]) -> ModelT:
    """The model's parameters from the query string. A parameter given twice is refused
    rather than guessed at (a proxy in front may have read the other copy); an empty one
    (`?limit=&cursor=`) is as if not given; parameters the model does not name are
    ignored."""
    values: dict[str, str] = {}
    for name in model.model_fields:
        given = request.query.getall(name, [])
        if len(given) > 1:
            raise validation_error(f"{name} must be given once")
        if given and given[0] != "":
            values[name] = given[0]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_error(first_error_message(exc)) from None
