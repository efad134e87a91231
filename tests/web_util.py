"""Headless Debian Chromium driven by Playwright, for the browser tests of the web page.

Never a browser that Playwright downloads: ``executable_path`` is the system's chromium, and
the tests skip without it. Its WebRTC stays on loopback: the bridge offers only 127.0.0.1 host
candidates, and these flags let Chromium pair with them directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--autoplay-policy=no-user-gesture-required",
    # Real addresses instead of random "*.local" names in the offer: the bridge (aioice) would
    # otherwise resolve those by multicast DNS on the LAN, which a test must not touch (and
    # aioice's mDNS lock is bound to the first event loop of the process, so a later test's
    # offer would fail with a 500).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # Lets Chromium gather 127.0.0.1 on a machine whose only interface is loopback. With
    # another interface it gathers that one, and the working pair is 127.0.0.1 <-> 127.0.0.1
    # with a peer-reflexive local side (the tests check the pair in getStats).
    "--allow-loopback-in-peer-connection",
]


class Watch:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url', '')})")


@pytest.fixture(name="browser")
async def browser_fixture() -> AsyncIterator[Any]:
    """A headless Chromium for one test (the event loop is per test, so is the browser)."""
    if not HAVE_CHROMIUM:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pw = pytest.importorskip("playwright.async_api")
    async with pw.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        await chromium.close()


async def new_page(browser: Any, *, width: int = 1280, height: int = 800) -> tuple[Any, Watch]:
    """A fresh context and page of that viewport size, with its console watched."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    return page, Watch(page)


async def shot(page: Any, name: str) -> Path:
    """Save a screenshot under test-artifacts/screenshots/."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def until(
    check: Callable[[], Awaitable[Any]], timeout: float = 15.0, step: float = 0.1
) -> Any:
    """Poll ``check`` until it returns something truthy; its last value on success."""
    async with asyncio.timeout(timeout):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(step)
