"""The demo page in headless Chromium, as a person uses it: sign up, sign in in cookie
mode, the four test routes, sessions, silent refresh, sign out; and where its tokens are
(not) kept."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tests.browser.harness import DemoPage, DemoTarget, http

PASSWORD = "correct horse battery staple"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "demo.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def new_name(stem: str) -> str:
    return f"{stem}_{secrets.token_hex(2)}"


def sign_up(target: DemoTarget, username: str) -> None:
    """Sign-up from outside the browser, for tests about something else."""
    status, body = http(
        target.url,
        "POST",
        "/api/auth/signup",
        {
            "username": username,
            "email": f"{username}@example.com",
            "password": PASSWORD,
        },
    )
    assert status == 201, body


def other_device(target: DemoTarget, username: str) -> dict:
    """A sign-in of the same user from a phone: another session."""
    status, body = http(
        target.url,
        "POST",
        "/api/auth/signin",
        {"username": username, "password": PASSWORD},
    )
    assert status == 200, body
    return body


def test_whole_demo_flow(
    page: DemoPage, demo_target: DemoTarget, tmp_path: Path
) -> None:
    name = new_name("ada")
    assert page.text("status") == "signed out"
    assert page.stats()["refreshes"] == 0  # none on load, none in this whole flow

    page.fill(name, PASSWORD, email=f"{name}@example.com")
    assert page.act("signup") == "User was registered successfully!"
    assert page.act("signup") == "409 Failed! Username is already in use!"

    phone = other_device(demo_target, name)
    page.fill(name, "not the password")
    assert page.act("signin") == "401 Invalid username or password."
    assert page.text("status") == "signed out"
    page.sign_in(name, PASSWORD)

    sessions = page.sessions()
    by_current = {s.get_attribute("data-current"): s for s in sessions}
    assert len(sessions) == 2 and set(by_current) == {"true", "false"}
    this, phone_item = by_current["true"], by_current["false"]
    assert "This device" in this.text
    assert "Chrome (headless) on Linux" in this.text
    assert "Safari on iOS" in phone_item.text
    assert "This device" not in phone_item.text
    for item in sessions:
        assert "IP127.0.0.1" in item.text.replace(" ", "").replace("\n", "")
        assert "Last used" in item.text
        assert item.find_element("css selector", '[data-testid="revoke"]')

    assert page.act("call-all") == "Public Content."
    assert page.act("call-user") == "User Content."
    assert page.act("call-mod") == "403 Require Moderator Role!"
    assert page.act("call-admin") == "403 Require Admin Role!"
    # Every call carried the bearer token: the user route answered 200 at once.
    assert [s.status for s in demo_target.requests("GET", "/api/test/user")][-1] == 200

    shot = page.full_page_png()
    assert shot.startswith(PNG_MAGIC)
    # docs/demo.png is committed: rewrite it only when asked (UPDATE_DEMO_SCREENSHOT=1).
    out = (
        SCREENSHOT
        if os.environ.get("UPDATE_DEMO_SCREENSHOT")
        else tmp_path / "demo.png"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(shot)

    revoke = phone_item.find_element("css selector", '[data-testid="revoke"]')
    assert page.act("revoke", revoke) == "Session revoked."
    assert [s.get_attribute("data-current") for s in page.sessions()] == ["true"]
    # The phone's session is really gone: its access token is refused.
    status, body = http(
        demo_target.url, "GET", "/api/test/user", token=phone["accessToken"]
    )
    assert (status, body["code"]) == (401, "token_revoked")

    assert page.act("signout") == "You've been signed out!"
    assert page.text("status") == "signed out"
    assert page.sessions() == []
    assert page.cookies_for("/api/auth/refreshtoken") == []
    (signout,) = demo_target.requests("POST", "/api/auth/signout")[-1:]
    assert (signout.status, signout.has_cookie, signout.has_csrf_header) == (
        200,
        True,
        True,
    )
    # Memory is cleared: the next call goes without a token.
    assert page.act("call-user") == "403 No token provided!"
    assert page.stats()["refreshes"] == 0
    assert page.script_errors() == []


def test_silent_refresh_once_for_calls_failing_together(
    page: DemoPage, demo_target: DemoTarget
) -> None:
    name = new_name("grace")
    sign_up(demo_target, name)
    page.sign_in(name, PASSWORD)
    refreshes = page.stats()["refreshes"]
    sent = len(demo_target.requests("POST", "/api/auth/refreshtoken"))

    demo_target.expire_access_tokens()
    page.click_together("call-user", "call-mod", "call-admin", "call-all")

    assert page.stats()["refreshes"] == refreshes + 1
    (refresh,) = demo_target.requests("POST", "/api/auth/refreshtoken")[sent:]
    assert (refresh.status, refresh.has_cookie, refresh.has_csrf_header) == (
        200,
        True,
        True,
    )
    log = page.log()
    assert log.count("Access token refreshed silently.") == 1
    assert {
        "GET /api/test/user → User Content.",
        "GET /api/test/mod → 403 Require Moderator Role!",
        "GET /api/test/admin → 403 Require Admin Role!",
        "GET /api/test/all → Public Content.",
    } <= set(log)
    # Each guarded call failed once with the expired token and was retried once.
    for path in ("/api/test/user", "/api/test/mod", "/api/test/admin"):
        statuses = [s.status for s in demo_target.requests("GET", path)][-2:]
        assert statuses == [401, 200 if path.endswith("user") else 403], path

    # The page adopted the rotated CSRF token: the next expiry refreshes fine again.
    demo_target.expire_access_tokens()
    assert page.act("call-user") == "User Content."
    assert page.stats()["refreshes"] == refreshes + 2
    assert page.text("status") == f"signed in as {name}"


def test_tokens_are_out_of_reach_of_scripts_and_storage(
    page: DemoPage, demo_target: DemoTarget
) -> None:
    name = new_name("linus")
    sign_up(demo_target, name)
    page.sign_in(name, PASSWORD)
    demo_target.expire_access_tokens()
    assert page.act("call-user") == "User Content."  # after a silent refresh

    (cookie,) = page.cookies_for("/api/auth/refreshtoken")
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        "auth_session",
        True,
        "Strict",
        "/api/auth",
    )
    # Scripts see no cookie at all, on the page or under /api/auth.
    assert page.driver.execute_script("return document.cookie") == ""
    storage = page.driver.execute_script(
        "return [localStorage.length, sessionStorage.length,"
        " JSON.stringify({...localStorage}), JSON.stringify({...sessionStorage})];"
    )
    assert storage == [0, 0, "{}", "{}"]
    assert cookie["value"] not in page.driver.page_source


def test_reload_forgets_the_tokens_and_sends_no_refresh(
    page: DemoPage, demo_target: DemoTarget
) -> None:
    """A reload loses the in-memory CSRF token without which the cookie is worth
    nothing, so the page starts `signed out` and sends no doomed refresh."""
    name = new_name("barbara")
    sign_up(demo_target, name)
    page.sign_in(name, PASSWORD)
    sent = len(demo_target.requests("POST", "/api/auth/refreshtoken"))

    page.driver.refresh()
    page.wait(lambda: page.stats()["ready"], "the page's start-up")

    assert page.stats()["refreshes"] == 0
    assert demo_target.requests("POST", "/api/auth/refreshtoken")[sent:] == []
    assert page.text("status") == "signed out"


def test_revoking_this_device_signs_the_page_out(
    page: DemoPage, demo_target: DemoTarget
) -> None:
    name = new_name("edsger")
    sign_up(demo_target, name)
    page.sign_in(name, PASSWORD)
    (this,) = page.sessions()
    assert page.act(
        "revoke", this.find_element("css selector", '[data-testid="revoke"]')
    ) == ("Session revoked.")
    assert page.text("status") == "signed out"
    assert page.sessions() == []
    assert page.cookies_for("/api/auth/refreshtoken") == []


def test_reload_shows_devices_signed_in_since(
    page: DemoPage, demo_target: DemoTarget
) -> None:
    name = new_name("barbara")
    sign_up(demo_target, name)
    assert page.find("reload-sessions").get_attribute("disabled") == "true"
    page.sign_in(name, PASSWORD)
    assert len(page.sessions()) == 1
    other_device(demo_target, name)
    assert len(page.sessions()) == 1  # the list is as it was at sign-in
    page.act("reload-sessions")
    current = [s.get_attribute("data-current") for s in page.sessions()]
    assert sorted(current) == ["false", "true"]
    page.act("signout")
    assert page.find("reload-sessions").get_attribute("disabled") == "true"


def test_session_revoked_elsewhere_ends_on_the_next_call(
    page: DemoPage, demo_target: DemoTarget
) -> None:
    name = new_name("margaret")
    sign_up(demo_target, name)
    phone = other_device(demo_target, name)
    page.sign_in(name, PASSWORD)
    status, _ = http(
        demo_target.url,
        "DELETE",
        f"/api/auth/sessions/{page.current_session_id()}",
        token=phone["accessToken"],
    )
    assert status == 200

    assert page.act("call-user") == "401 Unauthorized!"
    assert page.text("status") == "signed out"
    assert page.log()[-2].startswith("Session ended (403 ")
    (refresh,) = demo_target.requests("POST", "/api/auth/refreshtoken")[-1:]
    assert (refresh.status, refresh.code) == (403, "refresh_revoked")


def test_session_list_is_text_not_markup(
    page: DemoPage, demo_target: DemoTarget
) -> None:
    """A user agent is whatever the client chose to send: it is shown as text."""
    name = new_name("mallory")
    sign_up(demo_target, name)
    hostile = '<img src=x onerror="window.pwned=1">'
    status, _ = http(
        demo_target.url,
        "POST",
        "/api/auth/signin",
        {"username": name, "password": PASSWORD},
        user_agent=hostile,
    )
    assert status == 200
    page.sign_in(name, PASSWORD)
    texts = [s.text for s in page.sessions()]
    assert any(hostile in text for text in texts), texts
    assert page.driver.execute_script("return window.pwned === undefined")
    assert (
        page.driver.find_elements("css selector", '[data-testid="sessions"] img') == []
    )
