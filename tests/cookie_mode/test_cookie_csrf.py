"""The CSRF check of requests that spend the session cookie: the `X-CSRF-Token` header,
and the `Origin` when there is one (the server's own, or named in server.cors_origins;
`*` never counts)."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from server.clientaddr import parse_networks
from server.csrf import OriginPolicy, parse_origin
from tests.conftest import expect_error
from tests.cookie_mode.conftest import MakeBrowserApi
from tests.cookie_mode.helpers import REFRESH, SIGNOUT, Tab, new_tab, set_cookies

FRONT_END = "http://localhost:8081"


def own_origin(tab: Tab, scheme: str = "http") -> str:
    server = tab.api.client.server
    return f"{scheme}://{server.host}:{server.port}"


async def refused(response: object) -> None:
    await expect_error(response, 403, "CSRF check failed.", "csrf_failed")
    assert set_cookies(response) == []


@pytest.mark.parametrize("path", [REFRESH, SIGNOUT])
async def test_the_csrf_header(memory_browser_api: MakeBrowserApi, path: str) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    for csrf in (None, "", "wrong", tab.csrf[:-1], tab.csrf + "A", tab.csrf.upper()):
        await refused(await tab.post(path, csrf=csrf))
    response = await tab.post(path)
    assert response.status == 200


async def test_two_csrf_headers_are_refused(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    headers = CIMultiDict(
        [
            ("Cookie", f"auth_session={tab.cookie}"),
            ("X-CSRF-Token", tab.csrf),
            ("X-CSRF-Token", "other"),
        ]
    )
    await refused(await api.client.post(REFRESH, json={}, headers=headers))
    assert (await tab.post(REFRESH)).status == 200


async def test_the_csrf_token_is_not_enough_without_the_cookie(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    response = await tab.post(REFRESH, cookie=None)
    await expect_error(response, 403, "Refresh Token is required!", "refresh_missing")


@pytest.mark.parametrize("path", [REFRESH, SIGNOUT])
async def test_the_servers_own_origin(
    memory_browser_api: MakeBrowserApi, path: str
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    response = await tab.post(path, Origin=own_origin(tab))
    assert response.status == 200


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://localhost:8081",  # not listed
        "null",  # sandboxed frames, file: pages, some redirects
        "https://127.0.0.1",  # our host, another scheme and port
        "not an origin",
    ],
)
@pytest.mark.parametrize("path", [REFRESH, SIGNOUT])
async def test_foreign_origins_are_refused(
    memory_browser_api: MakeBrowserApi, path: str, origin: str
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    await refused(await tab.post(path, Origin=origin))
    assert (await tab.post(REFRESH)).status == 200  # nothing changed


async def test_our_host_with_another_scheme_or_port_is_foreign(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    server = tab.api.client.server
    for origin in (
        own_origin(tab, "https"),
        f"http://{server.host}:{server.port + 1}",
        f"http://{server.host}",
    ):
        await refused(await tab.post(REFRESH, Origin=origin))


async def test_two_origin_headers_are_refused(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    headers = CIMultiDict(
        [
            ("Cookie", f"auth_session={tab.cookie}"),
            ("X-CSRF-Token", tab.csrf),
            ("Origin", own_origin(tab)),
            ("Origin", "https://evil.example"),
        ]
    )
    await refused(await api.client.post(REFRESH, json={}, headers=headers))


async def test_an_origin_listed_in_cors_origins(
    memory_browser_api: MakeBrowserApi,
) -> None:
    """(Origins are listed as browsers send them: settings refuse other spellings.)"""
    api = await memory_browser_api(
        server={"cors_origins": ("https://a.example", FRONT_END)}
    )
    tab = await new_tab(api, "alice")
    tab = await tab.refreshed(Origin=FRONT_END)
    response = await tab.post(SIGNOUT, Origin=FRONT_END)
    assert response.status == 200


async def test_a_wildcard_never_admits_an_origin_to_cookie_mode(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api(server={"cors_origins": ("*",)})
    tab = await new_tab(api, "alice")
    for path in (REFRESH, SIGNOUT):
        await refused(await tab.post(path, Origin=FRONT_END))
    assert (await tab.post(REFRESH, Origin=own_origin(tab))).status == 200


async def test_a_trusted_proxy_says_the_scheme(
    memory_browser_api: MakeBrowserApi,
) -> None:
    """Behind a TLS-terminating proxy the page's origin is https while the proxy talks
    http to us: X-Forwarded-Proto from a trusted proxy gives the scheme."""
    api = await memory_browser_api(server={"trusted_proxies": ("127.0.0.1",)})
    tab = await new_tab(api, "alice")
    https = own_origin(tab, "https")
    await refused(await tab.post(REFRESH, Origin=https))
    tab = await tab.refreshed(Origin=https, **{"X-Forwarded-Proto": "https"})
    await refused(
        await tab.post(
            REFRESH, Origin=own_origin(tab), **{"X-Forwarded-Proto": "https"}
        )
    )


async def test_an_untrusted_peer_cannot_say_the_scheme(
    memory_browser_api: MakeBrowserApi,
) -> None:
    api = await memory_browser_api(server={"trusted_proxies": ("10.0.0.0/8",)})
    tab = await new_tab(api, "alice")
    response = await tab.post(
        REFRESH, Origin=own_origin(tab, "https"), **{"X-Forwarded-Proto": "https"}
    )
    await refused(response)


async def test_refusals_are_security_events(
    memory_browser_api: MakeBrowserApi, caplog: pytest.LogCaptureFixture
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    with caplog.at_level(logging.WARNING, logger="auth.security"):
        await refused(await tab.post(REFRESH, csrf="wrong"))
        await refused(await tab.post(REFRESH, Origin="https://evil.example"))
    events = [r.getMessage() for r in caplog.records if r.name == "auth.security"]
    assert len(events) == 2
    assert '"event": "csrf_failed"' in events[0] and '"reason": "token"' in events[0]
    assert '"reason": "origin"' in events[1]
    assert '"origin": "https://evil.example"' in events[1]
    assert tab.csrf not in events[0]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("https://Example.COM", ("https", "example.com", 443)),
        ("http://localhost:8081", ("http", "localhost", 8081)),
        ("http://[::1]:8080", ("http", "::1", 8080)),
        ("http://example.com/", ("http", "example.com", 80)),
        ("null", None),
        ("file://", None),
        ("ftp://example.com", None),
        ("https://example.com/path", None),
        ("https://user@example.com", None),
        ("https://example.com?q", None),
        ("https://", None),
        ("https://example.com:99999", None),
    ],
)
def test_parse_origin(text: str, parsed: tuple | None) -> None:
    assert parse_origin(text) == parsed


@pytest.mark.parametrize(
    ("peer", "trusted", "scheme"),
    [
        ("10.0.0.1", ("10.0.0.0/8",), "https"),
        ("::ffff:10.0.0.1", ("10.0.0.0/8",), "https"),  # a dual-stack socket's view
        ("10.0.0.1", ("::ffff:10.0.0.0/104",), "https"),
        ("::ffff:10.0.0.1", ("::ffff:10.0.0.1",), "https"),
        ("::ffff:11.0.0.1", ("10.0.0.0/8",), "http"),
        ("2001:db8::1", ("2001:db8::/32",), "https"),
        ("2001:db8::1", ("10.0.0.0/8",), "http"),
        ("not-an-address", ("10.0.0.0/8",), "http"),
    ],
)
def test_a_trusted_proxy_is_recognised_in_any_spelling(
    peer: str, trusted: tuple[str, ...], scheme: str
) -> None:
    """The scheme a proxy says is believed from the peers `server.trusted_proxies`
    names, compared as server/clientaddr.py compares them: an IPv4-mapped IPv6 peer
    is its IPv4 address."""
    policy = OriginPolicy((), parse_networks(trusted))
    request = make_mocked_request(
        "POST",
        REFRESH,
        headers={"Host": "auth.example.com", "X-Forwarded-Proto": "https"},
    ).clone(remote=peer)
    port = 443 if scheme == "https" else 80
    assert policy.own_origin(request) == (scheme, "auth.example.com", port)
