"""The reference for phase 1: a bare aiohttp app answering GET /api/test/user with the same
body and no auth. Run as `python -m bench.bare PORT` in its own process."""

from __future__ import annotations

import sys

from aiohttp import web

BODY = "User Content."


async def user_board(request: web.Request) -> web.Response:
    return web.Response(text=BODY)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/api/test/user", user_board)
    app.router.add_get("/api/test/all", user_board)  # the readiness probe
    return app


if __name__ == "__main__":
    web.run_app(
        make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None
    )
