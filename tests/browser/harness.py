"""The browser tests' plumbing, independent of which server serves the demo page: an app
served from a thread of the test process (so `server.clock.advance` reaches it), a
middleware that records what the server saw, the attacker's page, and the demo page as
tests drive it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 10


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it, and its answer."""

    method: str
    path: str
    origin: str | None
    has_cookie: bool
    has_csrf_header: bool
    status: int
    code: str | None


@dataclass
class DemoTarget:
    """A server serving the demo page at `url` + "/", as the tests need it: a way to make
    every access token it issued expire, and the requests it saw (the real app, run in
    this process by `serve_in_thread`)."""

    url: str
    expire_access_tokens: Callable[[], None]
    seen: list[Seen] = field(default_factory=list)

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in list(self.seen) if (s.method, s.path) == (method, path)]


def record_requests(seen: list[Seen], cookie_name: str) -> web.middleware:
    """An outermost middleware appending a `Seen` per request (aiohttp's own 404/405
    included)."""

    @web.middleware
    async def recorder(
        request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        def note(status: int, code: str | None) -> None:
            seen.append(
                Seen(
                    request.method,
                    request.path,
                    request.headers.get("Origin"),
                    cookie_name in request.cookies,
                    "X-CSRF-Token" in request.headers,
                    status,
                    code,
                )
            )

        try:
            response = await handler(request)
        except web.HTTPException as exc:
            note(exc.status, None)
            raise
        note(response.status, _error_code(response))
        return response

    return recorder


def _error_code(response: web.StreamResponse) -> str | None:
    if not isinstance(response, web.Response) or response.status < 400:
        return None
    if response.content_type != "application/json" or response.body is None:
        return None
    try:
        return json.loads(bytes(response.body)).get("code")
    except (ValueError, TypeError, AttributeError):
        return None


@contextlib.contextmanager
def serve_in_thread(app: web.Application, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` on a free port from a background thread; yield its base URL."""
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.SockSite(runner, sock).start())
    thread = threading.Thread(target=loop.run_forever, name=f"http-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()
        sock.close()


# ---- The attacker -------------------------------------------------------------------

# Every way a page on another origin can POST to the cookie routes with the victim's
# cookie: "simple" requests (no body, so no preflight, and the server reads it as `{}`),
# requests that need a preflight (a JSON body and a guessed X-CSRF-Token), and blind
# no-cors requests. None may succeed, and none may give the attacker anything to read.
ATTACK_PAGE = """<!doctype html>
<meta charset="utf-8"><title>Totally unrelated site</title>
<h1>Win a prize!</h1>
<script>
const target = new URLSearchParams(location.search).get("target");
const json = {"Content-Type": "application/json", "X-CSRF-Token": "guessed"};
const attempts = [];
for (const path of ["/api/auth/refreshtoken", "/api/auth/signout"]) {
  attempts.push([path, "simple", {}]);
  attempts.push([path, "preflighted", {headers: json, body: "{}"}]);
  attempts.push([path, "no-cors", {mode: "no-cors"}]);
}
window.attack = {done: false, results: []};
(async () => {
  for (const [path, kind, init] of attempts) {
    const result = {path, kind};
    try {
      const response = await fetch(target + path,
        {method: "POST", credentials: "include", ...init});
      Object.assign(result, {outcome: "answered", type: response.type,
        status: response.status, body: await response.text()});
    } catch (error) {
      Object.assign(result, {outcome: "rejected", error: String(error)});
    }
    window.attack.results.push(result);
  }
  window.attack.done = true;
})();
</script>
"""


def attacker_app() -> web.Application:
    """A site on another origin serving `/attack.html?target=<demo URL>`."""

    async def attack(request: web.Request) -> web.Response:
        return web.Response(text=ATTACK_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/attack.html", attack)
    return app


# ---- Talking to the server directly (another device) --------------------------------

OTHER_DEVICE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def http(
    base: str,
    method: str,
    path: str,
    body: dict | None = None,
    token: str | None = None,
    user_agent: str = OTHER_DEVICE_UA,
) -> tuple[int, Any]:
    """A JSON request from outside the browser, as another device would send it."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"User-Agent": user_agent}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _decode(response.read(), response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, _decode(error.read(), error.headers)


def _decode(raw: bytes, headers: Any) -> Any:
    if headers.get_content_type() == "application/json":
        return json.loads(raw)
    return raw.decode()


# ---- The demo page as a user drives it ----------------------------------------------


class DemoPage:
    """The demo page in the browser, through its `data-testid` hooks only."""

    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver, self.url = driver, url

    def open(self) -> DemoPage:
        """A fresh visit: no cookies, the page loaded and its start-up refresh over."""
        self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        self.driver.get_log("browser")  # drop earlier pages' messages
        self.driver.get(self.url + "/")
        self.wait(lambda: self.stats()["ready"], "the page's start-up")
        return self

    def find(self, testid: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')

    def text(self, testid: str) -> str:
        return self.find(testid).text

    def stats(self) -> dict[str, Any]:
        return self.driver.execute_script("return {...window.demoStats};")

    def wait(self, condition: Callable[[], Any], what: str) -> Any:
        return WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda _: condition(), f"waited {WAIT_SECONDS} s for {what}"
        )

    def fill(self, username: str, password: str, email: str = "") -> None:
        for testid, value in (
            ("username", username),
            ("email", email),
            ("password", password),
        ):
            field_ = self.find(testid)
            field_.clear()
            field_.send_keys(value)

    def act(self, testid: str, element: Any = None) -> str:
        """Click a button and wait until its action has settled; the output's text."""
        before = self.stats()["settled"]
        (element or self.find(testid)).click()
        self.wait(lambda: self.stats()["settled"] > before, f"{testid} to settle")
        return self.text("output")

    def click_together(self, *testids: str) -> None:
        """Click several buttons in one task of the page: their requests are all sent
        before any answer is read."""
        before = self.stats()["settled"]
        self.driver.execute_script(
            "for (const id of arguments[0])"
            " document.querySelector(`[data-testid=${id}]`).click();",
            list(testids),
        )
        self.wait(
            lambda: self.stats()["settled"] >= before + len(testids),
            f"{testids} to settle",
        )

    def sign_in(self, username: str, password: str) -> None:
        self.fill(username, password)
        self.act("signin")
        assert self.text("status") == f"signed in as {username}"

    def sessions(self) -> list[Any]:
        return self.find("sessions").find_elements(
            By.CSS_SELECTOR, '[data-testid="session"]'
        )

    def current_session_id(self) -> str:
        (current,) = [
            s for s in self.sessions() if s.get_attribute("data-current") == "true"
        ]
        return current.get_attribute("data-session-id")

    def log(self) -> list[str]:
        """The activity log's entries, oldest first, without their times."""
        entries = self.driver.execute_script(
            "return [...document.querySelectorAll('[data-testid=log-entry] span')]"
            ".map((e) => e.textContent);"
        )
        return list(reversed(entries))

    def cookies_for(self, path: str) -> list[dict[str, Any]]:
        """Every cookie the browser would send to `path`, HttpOnly ones included."""
        answer = self.driver.execute_cdp_cmd(
            "Network.getCookies", {"urls": [self.url + path]}
        )
        return answer["cookies"]

    def full_page_png(self) -> bytes:
        """The whole page, not just the window's height."""
        height = self.driver.execute_script(
            "return document.documentElement.scrollHeight"
        )
        width = self.driver.execute_script("return window.innerWidth")
        answer = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        return base64.b64decode(answer["data"])

    def script_errors(self) -> list[str]:
        """Console errors other than the browser's own note on each 4xx answer."""
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE"
            and entry["message"].startswith(self.url)
            and "Failed to load resource" not in entry["message"]
        ]
