"""Real-browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Playwright's own browser download does not work on these machines, so the tests launch the
system Chromium (``CHROMIUM`` chooses another binary). Each test gets a fresh, empty browser
context, so what a test finds in browser storage afterwards was written by the page under test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

# Playwright's sync API runs an event loop in the test thread; Django refuses ORM calls from a
# thread with a running loop unless told that this is deliberate (test set-up code only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50 NetType/WIFI Language/zh_CN"
    ),
}


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is needed for the browser tests: scripts/ensure_tools.sh installs it")
    return path


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def _context(browser: Browser, **options: Any) -> BrowserContext:
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", **options)
    context.set_default_timeout(15_000)
    return context


@pytest.fixture
def desktop_page(browser: Browser) -> Iterator[Page]:
    """A 1920x1080 desktop page (about 2 megapixels) in a fresh browser context."""
    context = _context(browser, viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def phone_page(browser: Browser) -> Iterator[Page]:
    """A phone-sized page with touch, as WeChat's built-in browser on an iPhone presents itself."""
    context = _context(browser, **PHONE)
    page = context.new_page()
    yield page
    context.close()


def browser_storage(page: Page) -> dict[str, Any]:
    """What the page's origin keeps on the device: web storage, IndexedDB, Cache Storage, workers."""
    return page.evaluate(
        """async () => ({
            localStorage: window.localStorage.length,
            sessionStorage: window.sessionStorage.length,
            indexedDB: (await indexedDB.databases()).map(db => db.name),
            cacheStorage: await caches.keys(),
            serviceWorkers: (await navigator.serviceWorker.getRegistrations()).length,
        })"""
    )


EMPTY_STORAGE = {"localStorage": 0, "sessionStorage": 0, "indexedDB": [], "cacheStorage": [], "serviceWorkers": 0}
