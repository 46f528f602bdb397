"""What a load balancer, an orchestrator and Prometheus ask: `GET /api/health` and
`GET /metrics`. Neither is cached or rate-limited."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..metrics import CONTENT_TYPE

NO_STORE = {"Cache-Control": "no-store"}


async def health(request: web.Request) -> web.Response:
    """200 while the storage answers within the health timeout, else 503."""
    problem = await request.app[keys.AUTH].health.problem_now()
    if problem is None:
        return web.json_response({"status": "ok"}, headers=NO_STORE)
    body = {"status": "unavailable", "message": problem}
    return web.json_response(body, status=503, headers=NO_STORE)


async def metrics(request: web.Request) -> web.Response:
    """Mounted only when `metrics.enabled`: otherwise 404 like any unknown route."""
    body = await request.app[keys.AUTH].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, **NO_STORE})
