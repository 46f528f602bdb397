"""Notes: a small aiohttp app that embeds the auth server for its users.

- the auth routes under /auth (sign-up, sign-in, refresh, sign-out, password, sessions);
- `GET /` public, `GET /notes` and `POST /notes` for any signed-in user (each sees only
  their own notes), `GET /admin/notes` for admins only;
- the app's own errors keep the app's own shape: `{"error": "..."}`.

Run it with `python -m examples.notes.app` (settings from the environment, e.g.
`AUTH_STORAGE_PATH=/tmp/notes/auth.db`), then sign up at POST /auth/signup.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

from aiohttp import web

from server import Auth, current_claims, requires

NOTES = web.AppKey("notes", dict)
NOTE_IDS = web.AppKey("note_ids", itertools.count)
MAX_NOTE = 1000


@dataclass(frozen=True)
class Note:
    id: int
    text: str


async def index(request: web.Request) -> web.Response:
    return web.json_response({"app": "notes", "signUp": "/auth/signup"})


@requires()
async def list_notes(request: web.Request) -> web.Response:
    user_id = current_claims(request).user_id
    notes = request.app[NOTES].get(user_id, [])
    return web.json_response({"notes": [asdict(note) for note in notes]})


@requires()
async def add_note(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error("body must be JSON", 400)
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_NOTE:
        return _error(f"text must be 1 to {MAX_NOTE} characters", 400)
    note = Note(next(request.app[NOTE_IDS]), text)
    request.app[NOTES].setdefault(current_claims(request).user_id, []).append(note)
    return web.json_response(asdict(note), status=201)


@requires("admin")
async def all_notes(request: web.Request) -> web.Response:
    counts = {user: len(notes) for user, notes in request.app[NOTES].items()}
    return web.json_response({"notesPerUser": counts})


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def create_app(auth: Auth | None = None) -> web.Application:
    """The notes app; `auth` defaults to the settings in the environment."""
    app = web.Application()
    app[NOTES] = {}
    app[NOTE_IDS] = itertools.count(1)
    app.router.add_get("/", index)
    app.router.add_get("/notes", list_notes)
    app.router.add_post("/notes", add_note)
    app.router.add_get("/admin/notes", all_notes)
    (auth or Auth()).setup(app, prefix="/auth")
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=8090)
