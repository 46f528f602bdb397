"""The seeds' test content routes: plain text, gated by role in the route table."""

from __future__ import annotations

from aiohttp import web


async def public_board(request: web.Request) -> web.Response:
    return web.Response(text="Public Content.")


async def user_board(request: web.Request) -> web.Response:
    return web.Response(text="User Content.")


async def moderator_board(request: web.Request) -> web.Response:
    return web.Response(text="Moderator Content.")


async def admin_board(request: web.Request) -> web.Response:
    return web.Response(text="Admin Content.")
