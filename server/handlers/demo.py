"""The demo page at `GET /`: static HTML, CSS and JavaScript from `server/static/`, no
build step and nothing from another origin. Its Content-Security-Policy allows scripts,
styles and requests to this origin only, so an injected script has nowhere to load from
and nowhere to send a token."""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import hdrs, web

from .. import errors

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# One file name, no folder and no leading dot: nothing outside the folder is reachable.
FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
# Always revalidated (ETag, Last-Modified): an updated page is seen at the next load.
CACHE_CONTROL = "no-cache"


class StaticFiles:
    """The files of one folder that may be served, listed once when the server starts
    (no file I/O on the event loop: aiohttp's FileResponse reads in a thread)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names = frozenset(
            path.name
            for path in (folder.iterdir() if folder.is_dir() else ())
            if path.is_file()
            and FILE_NAME.fullmatch(path.name)
            and path.suffix in CONTENT_TYPES
        )

    def response(self, request: web.Request, name: str) -> web.FileResponse:
        if name not in self.names:
            raise errors.not_found(request.path)
        path = self.folder / name
        return web.FileResponse(
            path,
            headers={
                hdrs.CONTENT_TYPE: CONTENT_TYPES[path.suffix],
                hdrs.CACHE_CONTROL: CACHE_CONTROL,
                hdrs.CONTENT_SECURITY_POLICY: CONTENT_SECURITY_POLICY,
                hdrs.X_FRAME_OPTIONS: "DENY",
            },
        )


SITE = StaticFiles(STATIC_DIR)


async def page(request: web.Request) -> web.StreamResponse:
    return SITE.response(request, "index.html")


async def static_file(request: web.Request) -> web.StreamResponse:
    return SITE.response(request, request.match_info["name"])
