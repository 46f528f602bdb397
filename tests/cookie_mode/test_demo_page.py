"""The demo page at `GET /`: static files with their content types, a strict
Content-Security-Policy, nothing outside the static folder, and `server.demo_page`."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.handlers import demo
from tests.conftest import expect_error
from tests.cookie_mode.conftest import MakeBrowserApi

POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@pytest.fixture
def static_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A static folder of our own, so the checks do not depend on the page's files."""
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "index.html").write_text('<p data-testid="status">signed out</p>')
    (folder / "app.js").write_text("export {};")
    (folder / "style.css").write_text("body {}")
    (folder / "notes.txt").write_text("not served")
    (folder / ".hidden.js").write_text("not served")
    (tmp_path / "secret.js").write_text("outside the folder")
    monkeypatch.setattr(demo, "SITE", demo.StaticFiles(folder))
    return folder


async def test_the_page_is_served(memory_browser_api: MakeBrowserApi) -> None:
    """The repository's own page."""
    api = await memory_browser_api()
    response = await api.client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-cache"
    assert 'data-testid="status"' in await response.text()


@pytest.mark.parametrize(
    ("path", "content_type", "text"),
    [
        ("/", "text/html; charset=utf-8", '<p data-testid="status">signed out</p>'),
        ("/static/app.js", "text/javascript; charset=utf-8", "export {};"),
        ("/static/style.css", "text/css; charset=utf-8", "body {}"),
    ],
)
async def test_static_files_and_their_types(
    memory_browser_api: MakeBrowserApi,
    static_folder: Path,
    path: str,
    content_type: str,
    text: str,
) -> None:
    api = await memory_browser_api()
    response = await api.client.get(path)
    assert (response.status, await response.text()) == (200, text)
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Security-Policy"] == POLICY
    again = await api.client.get(
        path, headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status == 304


@pytest.mark.parametrize(
    "path",
    [
        "/static/notes.txt",
        "/static/.hidden.js",
        "/static/missing.js",
        "/static/..%2Fsecret.js",
        "/static/%2E%2E%2Fsecret.js",
        "/static/index.html/x",
        "/static/",
    ],
)
async def test_nothing_else_is_served(
    memory_browser_api: MakeBrowserApi, static_folder: Path, path: str
) -> None:
    api = await memory_browser_api()
    response = await api.client.get(path)
    body = await expect_error(response, 404, None, "not_found")
    assert body["message"].startswith("Route /static/")


async def test_demo_page_off(
    memory_browser_api: MakeBrowserApi, static_folder: Path
) -> None:
    api = await memory_browser_api(server={"demo_page": False})
    for path in ("/", "/static/app.js"):
        response = await api.client.get(path)
        await expect_error(response, 404, f"Route {path} not found", "not_found")
    assert (await api.client.get("/api/test/all")).status == 200


async def test_the_page_is_not_in_the_openapi_document(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    document = await (await api.client.get("/api/openapi.json")).json()
    assert "/" not in document["paths"]
    assert "/static/{name}" not in document["paths"]
    schemas = document["components"]["schemas"]
    assert set(schemas["CookieSigninResult"]["required"]) == {
        "id",
        "username",
        "email",
        "roles",
        "accessToken",
        "tokenType",
        "expiresIn",
        "csrfToken",
    }
    assert schemas["SigninBody"]["properties"]["cookie"]["anyOf"][0] == {
        "type": "boolean"
    }
    signin = document["paths"]["/api/auth/signin"]["post"]["responses"]["200"]
    assert signin["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SigninAnswer"
    }
