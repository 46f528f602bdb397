"""A page on another origin tries to refresh and to sign out with the victim's cookie
(`fetch` with `credentials: "include"`), while the victim is signed in on the demo page.

Two attackers: http://127.0.0.1:<other port> is another origin but the same site, so
the browser does send the SameSite=Strict cookie, and only the CSRF header and the Origin
check stop it; http://localhost:<other port> is another site, so the cookie is not even
sent. Either way the attacker reads nothing and the victim's session lives on."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.browser.harness import DemoPage, DemoTarget, http

PASSWORD = "correct horse battery staple"
COOKIE_ROUTES = ("/api/auth/refreshtoken", "/api/auth/signout")


def run_attack(page: DemoPage, origin: str) -> list[dict[str, Any]]:
    """Open the attacker's page in a second tab, wait for its attempts, close it."""
    driver = page.driver
    victim = driver.current_window_handle
    driver.switch_to.new_window("tab")
    try:
        driver.get(f"{origin}/attack.html?target={page.url}")
        page.wait(
            lambda: driver.execute_script("return window.attack && window.attack.done"),
            "the attacker's attempts",
        )
        return driver.execute_script("return window.attack.results")
    finally:
        driver.close()
        driver.switch_to.window(victim)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"]
)
def test_another_origin_cannot_refresh_or_sign_out(
    page: DemoPage, demo_target: DemoTarget, attacker_port: int, host: str
) -> None:
    origin = f"http://{host}:{attacker_port}"
    name = f"victim_{secrets.token_hex(2)}"
    status, _ = http(
        demo_target.url,
        "POST",
        "/api/auth/signup",
        {"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert status == 201
    page.sign_in(name, PASSWORD)
    seen_before = len(demo_target.seen)

    results = run_attack(page, origin)

    # The attacker could read nothing: CORS refused every answer, and the blind
    # (no-cors) requests got opaque ones.
    assert len(results) == 6
    for result in results:
        if result["kind"] == "no-cors":
            assert (
                result["outcome"],
                result["type"],
                result["status"],
                result["body"],
            ) == (
                "answered",
                "opaque",
                0,
                "",
            ), result
        else:
            assert result["outcome"] == "rejected", result
            assert "Failed to fetch" in result["error"], result

    # What reached the server: per route, a refused preflight (the JSON attempt never
    # got sent) and two POSTs without the CSRF header, both refused.
    from_attacker = [s for s in demo_target.seen[seen_before:] if s.origin == origin]
    for path in COOKIE_ROUTES:
        mine = [s for s in from_attacker if s.path == path]
        assert [s.method for s in mine] == ["POST", "OPTIONS", "POST"], mine
        preflight = mine[1]
        assert preflight.status >= 400, preflight
        for post in (mine[0], mine[2]):
            assert post.status == 403 and not post.has_csrf_header, post
            if host == "127.0.0.1":
                # Same site: the cookie came along; the CSRF check stopped it.
                assert (post.has_cookie, post.code) == (True, "csrf_failed"), post
            else:
                # Another site: SameSite=Strict kept the cookie home.
                assert not post.has_cookie, post
                assert post.code in {"refresh_missing", "csrf_failed"}, post

    # The victim's session survived the sign-out attempts, and its CSRF token was not
    # rotated away: after the access token expires, the page refreshes as usual.
    refreshes = page.stats()["refreshes"]
    demo_target.expire_access_tokens()
    assert page.act("call-user") == "User Content."
    assert page.stats()["refreshes"] == refreshes + 1
    assert page.text("status") == f"signed in as {name}"
