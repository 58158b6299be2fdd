"""Browser tests: the real web app (clients/web/dist) in headless Chromium against a real server.

One Chromium per test (launched as Debian's /usr/bin/chromium, never a downloaded build), one
browser context per person, so several people use the app side by side without sharing storage.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

from realtime import demo
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, PC
from tests.conftest import Server

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "clients" / "web"
DIST_INDEX = WEB / "dist" / "index.html"
SCREENSHOTS = ROOT / "build" / "screenshots"


def _newest_source() -> float:
    files = [p for p in (WEB / "src").rglob("*") if p.is_file()]
    files += [
        WEB / n for n in ("index.html", "package.json", "package-lock.json", "vite.config.ts")
    ]
    return max(p.stat().st_mtime for p in files if p.exists())


@pytest.fixture(scope="session", autouse=True)
def web_dist() -> Path:
    """The built app; built here when missing or older than its sources (`make test` builds it)."""
    if not DIST_INDEX.exists() or DIST_INDEX.stat().st_mtime < _newest_source():
        if shutil.which("npm") is None:
            pytest.fail("npm is needed to build clients/web (or run `make web` first)")
        if not (WEB / "node_modules").is_dir():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
        subprocess.run(["npm", "run", "build"], cwd=WEB, check=True)
    return DIST_INDEX


class Browser:
    """One Chromium; a fresh context (own storage) per person."""

    def __init__(self, persistent: BrowserContext, url: str) -> None:
        self.persistent = persistent
        self.url = url
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    async def page(self, viewport: dict[str, int] | None = None, touch: bool = False) -> Page:
        browser = self.persistent.browser
        assert browser is not None
        context = await browser.new_context(
            viewport=viewport or PC, accept_downloads=True, has_touch=touch
        )
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{exc}"))
        # The page's Content-Security-Policy must allow everything the app does.
        page.on(
            "console",
            lambda m: "Content Security Policy" in m.text and self.errors.append(m.text[:300]),
        )
        await page.goto(self.url + "/")
        return page

    async def signed_in(
        self, username: str, viewport: dict[str, int] | None = None, touch: bool = False
    ) -> Page:
        """A page of a new person, signed in (in Chinese, the default language); ``touch``: a
        phone's touch screen."""
        page = await self.page(viewport, touch)
        await page.get_by_label("用户名").fill(username)
        await page.get_by_label("密码").fill(demo.DEMO_PASSWORD)
        await page.get_by_role("button", name="登录").click()
        await page.locator(".conn[data-state=connected]").wait_for()
        return page


async def shown_notification(page: Page, timeout: float = 10.0) -> dict[str, Any] | None:
    """The first notification the page's service worker shows (title, body, url), polled
    with ``evaluate``: ``wait_for_function`` took an async predicate's promise itself for a
    truthy answer and read null before the notification showed (CI)."""
    for _ in range(int(timeout / 0.2)):
        shown = await page.evaluate(
            """async () => {
              const r = await navigator.serviceWorker.ready;
              const n = await r.getNotifications();
              return n.length ? {title: n[0].title, body: n[0].body, url: n[0].data.url} : null;
            }"""
        )
        if shown is not None:
            return dict(shown)
        await asyncio.sleep(0.2)
    return None


async def screenshot(page: Page, name: str, **kw: Any) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **kw)


@pytest.fixture(scope="session")
def chromium() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium)")
    return CHROMIUM


@asynccontextmanager
async def launch(
    url: str, executable: str = CHROMIUM, extra_args: tuple[str, ...] = ()
) -> AsyncIterator[Browser]:
    """Chromium with a fresh profile, pointed at a server; fails on uncaught page errors and
    on anything the Content-Security-Policy blocked."""
    with tempfile.TemporaryDirectory(prefix="homeroom-chromium-") as profile:
        async with async_playwright() as pw:
            persistent = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=[*CHROMIUM_ARGS, *extra_args],
            )
            browser = Browser(persistent, url)
            try:
                yield browser
            finally:
                for context in browser.contexts:
                    await context.close()
                await persistent.close()
    assert not browser.errors, f"uncaught errors in the page: {browser.errors}"


@pytest.fixture
async def web(server: Server, chromium: str) -> AsyncIterator[Browser]:
    async with launch(server.url, chromium) as browser:
        yield browser
