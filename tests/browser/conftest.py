"""Headless Chromium for the demo page's tests: Debian's `chromium` and `chromium-driver`
(apt; never a downloaded browser) driven by Selenium. Without them the tests skip and
say how to install them.

`demo_target` is the real server under test: the standalone app, run in a thread of
this process (so tests move its clock), with the `record_requests` middleware outermost
and `cookies.secure = false` (plain http)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from server import clock, create_app
from tests.browser.harness import (
    DemoPage,
    DemoTarget,
    attacker_app,
    record_requests,
    serve_in_thread,
)
from tests.conftest import make_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = (
    "chromium/chromedriver not installed: apt-get install chromium chromium-driver"
)
# Off: anything that would reach beyond this machine or do work in the background.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
ACCESS_TTL = 60


def _installed(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for all browser tests, with a fresh profile."""
    if not (_installed(CHROMIUM) and _installed(CHROMEDRIVER)):
        pytest.skip(MISSING)
    profile = tempfile.mkdtemp(prefix="demo-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # A Service with the driver's path: Selenium Manager is never run, nothing downloads.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_target(
    browser: WebDriver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoTarget]:
    """The real server, with a short access TTL that `expire_access_tokens` jumps past
    (the exp leeway included) on the server clock, which this process shares."""
    settings = make_settings(
        tmp_path_factory.mktemp("demo"),
        tokens={"access_ttl": ACCESS_TTL},
        cookies={"secure": False},
    )
    leeway = settings.tokens.expiry_leeway
    target = DemoTarget("", lambda: clock.advance(ACCESS_TTL + leeway + 1))
    app = create_app(settings)
    app.middlewares.insert(0, record_requests(target.seen, settings.cookies.name))
    with serve_in_thread(app) as url:
        target.url = url
        yield target


@pytest.fixture(scope="session")
def attacker_port(browser: WebDriver) -> Iterator[int]:
    """A site on another port (another origin): reached as http://127.0.0.1:<port>
    (same site as the demo, so the browser sends the SameSite cookie) and as
    http://localhost:<port> (another site)."""
    with serve_in_thread(attacker_app()) as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.fixture
def page(browser: WebDriver, demo_target: DemoTarget) -> DemoPage:
    """The demo page, freshly opened with no cookies, in the only tab."""
    for handle in browser.window_handles[1:]:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(browser.window_handles[0])
    return DemoPage(browser, demo_target.url).open()
