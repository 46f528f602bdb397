"""Where cookie mode reaches: only the handlers that spend the cookie touch
aiohttp-session (no session middleware, nothing on the protected routes); the cookie's
Path follows an embedding host's prefix; every instance sharing the storage reads every
other's cookies; the settings."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp_session
import pytest
from aiohttp import web
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from server import Auth, keys, load_settings
from server.cookies import CookieStorage, SessionCookies
from server.settings import CookieSettings, Settings
from tests.backends import BACKENDS
from tests.conftest import PASSWORD, Api
from tests.cookie_mode.conftest import MakeBrowserApi
from tests.cookie_mode.helpers import (
    REFRESH,
    Tab,
    cookie_signin,
    new_tab,
    the_cookie,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def session_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the session loads and saves of aiohttp-session's storages (ours loads
    its own way: see CookieStorage), and every read of a session cookie
    (`load_cookie`, which all of them go through)."""
    calls: Counter[str] = Counter()
    for cls, name in (
        (EncryptedCookieStorage, "load_session"),
        (CookieStorage, "load_session"),
        (EncryptedCookieStorage, "save_session"),
        (aiohttp_session.AbstractStorage, "load_cookie"),
        (aiohttp_session.AbstractStorage, "new_session"),
    ):
        original = getattr(cls, name)

        def counted(*args: Any, _name: str = name, _call: Any = original) -> Any:
            calls[_name] += 1
            return _call(*args)

        monkeypatch.setattr(cls, name, counted)
    return calls


async def test_protected_routes_never_touch_the_session(
    memory_browser_api: MakeBrowserApi, session_calls: Counter[str]
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    session_calls.clear()
    bearer = {"Authorization": f"Bearer {tab.access}"}
    with_cookie = {**bearer, "Cookie": f"auth_session={tab.cookie}"}
    for path in ("/api/test/user", "/api/test/all", "/api/users/me"):
        for headers in (bearer, with_cookie):
            response = await api.client.get(path, headers=headers)
            assert response.status == 200
    assert session_calls == Counter()
    # The cookie's own routes do use it: one load and one save per refresh.
    assert (await tab.post(REFRESH)).status == 200
    assert session_calls == Counter(
        load_session=1, load_cookie=1, new_session=1, save_session=1
    )


def test_no_session_middleware_is_installed(tmp_path: Path) -> None:
    from server import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path))
    modules = {middleware.__module__ for middleware in app.middlewares}
    assert not any(module.startswith("aiohttp_session") for module in modules)


def embedded_host(prefix: str) -> Any:
    def factory(settings: Settings) -> web.Application:
        app = web.Application()
        Auth(settings).setup(app, prefix=prefix)
        return app

    return factory


@pytest.mark.parametrize("prefix", ["/auth", "/id/v1/"])
async def test_the_cookie_path_follows_an_embedding_hosts_prefix(
    memory_browser_api: MakeBrowserApi, prefix: str
) -> None:
    api = await memory_browser_api(embedded_host(prefix))
    base = prefix.rstrip("/")
    signup = await api.client.post(
        f"{base}/signup",
        json={"username": "alice", "email": "a@example.com", "password": PASSWORD},
    )
    assert signup.status == 201
    response = await api.client.post(
        f"{base}/signin",
        json={"username": "alice", "password": PASSWORD, "cookie": True},
    )
    assert response.status == 200
    cookie = the_cookie(response)
    assert cookie["path"] == base
    tab = Tab(api, cookie.coded_value, (await response.json())["csrfToken"], "")
    refreshed = await tab.post(f"{base}/refreshtoken")
    assert refreshed.status == 200
    assert the_cookie(refreshed)["path"] == base
    signed_out = await tab.post(f"{base}/signout")
    assert (signed_out.status, the_cookie(signed_out)["path"]) == (200, base)


@pytest.mark.parametrize("backend", BACKENDS[1:])
async def test_every_instance_reads_every_others_cookies(
    make_browser_api: MakeBrowserApi,
) -> None:
    """Two servers over one database (two instances or workers): the cookie key comes
    from the shared storage."""
    first = await make_browser_api()
    second = await make_browser_api()
    assert (await first.signup("alice")).status == 201
    tab = await cookie_signin(first, "alice")
    on_second = await Tab(second, tab.cookie, tab.csrf, tab.access).refreshed()
    back_on_first = await Tab(
        first, on_second.cookie, on_second.csrf, on_second.access
    ).refreshed()
    assert back_on_first.csrf == tab.csrf
    assert first.app[keys.AUTH].cookies is not second.app[keys.AUTH].cookies


def test_settings_file_and_environment() -> None:
    settings = load_settings(ROOT / "settings.toml", environ={})
    assert settings.cookies == CookieSettings("auth_session", True, "Strict")
    assert settings.server.demo_page is True
    changed = load_settings(
        ROOT / "settings.toml",
        environ={
            "AUTH_COOKIES_NAME": "sid",
            "AUTH_COOKIES_SECURE": "false",
            "AUTH_COOKIES_SAMESITE": "Lax",
            "AUTH_SERVER_DEMO_PAGE": "false",
        },
    )
    assert changed.cookies == CookieSettings("sid", False, "Lax")
    assert changed.server.demo_page is False


def test_the_cookie_needs_its_key_from_a_running_app() -> None:
    cookies = SessionCookies(CookieSettings(), 60, None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="when the app starts"):
        _ = cookies.storage


async def test_cookie_mode_api_helper_is_sound(
    memory_browser_api: MakeBrowserApi,
) -> None:
    """The helpers really send nothing the test did not give (no cookie jar)."""
    api: Api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    response = await api.client.post(
        REFRESH, json={}, headers={"X-CSRF-Token": tab.csrf}
    )
    assert response.status == 403
