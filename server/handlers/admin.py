"""User administration (role admin, declared in the route table): list with search and
cursor paging, read, change roles or the disabled flag. Deletion is in `users`."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..bodies import read_body
from ..caller import Caller
from ..guards import current_claims
from ..queries import read_query
from ..schemas import UserListQuery, UserPatchBody
from .common import json_ok, user_record


async def list_users(request: web.Request) -> web.Response:
    query = read_query(request, UserListQuery)
    page = await request.app[keys.AUTH].service.list_users(
        limit=query.limit, cursor=query.cursor, query=query.q
    )
    return json_ok({"users": [user_record(u) for u in page.users], "next": page.next})


async def get_user(request: web.Request) -> web.Response:
    user = await request.app[keys.AUTH].service.get_user(request.match_info["id"])
    return json_ok(user_record(user))


async def update_user(request: web.Request) -> web.Response:
    body = await read_body(request, UserPatchBody)
    user = await request.app[keys.AUTH].service.update_user(
        Caller.of(request),
        current_claims(request),
        request.match_info["id"],
        roles=body.roles,
        disabled=body.disabled,
    )
    return json_ok(user_record(user))
