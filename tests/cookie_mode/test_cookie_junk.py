"""Junk session cookies (garbage, forged, made under another key) cost no log line
each: the first from an address is a `session_cookie_invalid` security event, the rest
are counted into one summary line; every one still gets the contract's answer."""

from __future__ import annotations

import json
import logging

import pytest
from cryptography.fernet import Fernet

from server import clock
from server.events import SUMMARY_WINDOW, flush_events
from tests.conftest import expect_error
from tests.cookie_mode.conftest import MakeBrowserApi
from tests.cookie_mode.helpers import REFRESH, SIGNOUT, new_tab

JUNK = [
    "garbage",
    "gAAAAABjunk" + "A" * 80,  # looks like a Fernet token, is not one
    Fernet(Fernet.generate_key()).encrypt(b'{"session": {}}').decode(),  # other key
    "caf\u00e9",
]


def security_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "auth.security"
    ]


async def test_a_flood_of_junk_cookies_is_one_line_and_a_summary(
    memory_browser_api: MakeBrowserApi, caplog: pytest.LogCaptureFixture
) -> None:
    api = await memory_browser_api()
    tab = await new_tab(api, "alice")
    with caplog.at_level(logging.DEBUG):
        for n in range(100):
            junk = JUNK[n % len(JUNK)]
            path = REFRESH if n % 2 else SIGNOUT
            response = await api.client.post(
                path,
                json={},
                headers={"Cookie": f"auth_session={junk}", "X-CSRF-Token": tab.csrf},
            )
            await expect_error(
                response, 403, "Refresh Token is required!", "refresh_missing"
            )
        assert [r.getMessage() for r in caplog.records] == [
            r.getMessage() for r in caplog.records if r.name == "auth.security"
        ], "nothing but security events (aiohttp-session's warning is not logged)"
        lines = security_lines(caplog)
        assert len(lines) == 2  # one per route
        assert {(line["event"], line["route"], line["ip"]) for line in lines} == {
            ("session_cookie_invalid", SIGNOUT, "127.0.0.1"),
            ("session_cookie_invalid", REFRESH, "127.0.0.1"),
        }
        caplog.clear()
        clock.advance(SUMMARY_WINDOW)
        flush_events()
        summaries = security_lines(caplog)
    assert sorted((s["event"], s["route"], s["suppressed"]) for s in summaries) == [
        ("session_cookie_invalid", REFRESH, 49),
        ("session_cookie_invalid", SIGNOUT, 49),
    ]
    # The real cookie still works.
    assert (await tab.post(REFRESH)).status == 200
