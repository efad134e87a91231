"""Headless Debian Chromium driven by Playwright, for the browser tests of the web page.

Never a browser that Playwright downloads: ``executable_path`` is the system's chromium, and
the tests skip without it. Its WebRTC stays on loopback: the bridge offers only 127.0.0.1 host
candidates, and these flags let Chromium pair with them directly.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import async_playwright

from bridge.sim.picture import read_stamp

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()  # checked once, not in the event loop
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
    # Chromium and Playwright are test dependencies that scripts/bootstrap --test installs: if
    # one is missing the setup is broken, and the page's tests must say so, not skip.
    if not HAVE_CHROMIUM:
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/bootstrap --test (apt-get install chromium)"
        )
    async with async_playwright() as playwright:
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


# Frame counters of a <video> or <img>, and the stamp the simulated doorbell burns into each
# picture (top rows only), read back through a canvas at the picture's own size.
PLAYBACK = """sel => { const v = document.querySelector(sel);
  return v ? {t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames} : {t: 0, frames: 0}; }"""
STAMP = """async sel => {
  const el = document.querySelector(sel);
  if (el.requestVideoFrameCallback) await new Promise(r => el.requestVideoFrameCallback(r));
  const w = el.videoWidth || el.naturalWidth, rows = 64;
  const c = document.createElement('canvas'); c.width = w; c.height = rows;
  const g = c.getContext('2d', {willReadFrequently: true}); g.drawImage(el, 0, 0);
  const now = Date.now(), d = g.getImageData(0, 0, w, rows).data;
  let s = ''; for (let i = 0; i < d.length; i += 4) s += String.fromCharCode((d[i] + d[i+1] + d[i+2]) / 3);
  return {w, rows, now, gray: btoa(s)}; }"""


async def stamp(page: Any, selector: str) -> tuple[int, float]:
    """(frame number, glass-to-glass latency in ms) of the picture on screen now."""
    got = await page.evaluate(STAMP, selector)
    gray = np.frombuffer(base64.b64decode(got["gray"]), dtype=np.uint8)
    frame, captured_ms = read_stamp(gray.reshape(got["rows"], got["w"]))
    return frame, got["now"] - captured_ms


async def playing(page: Any, selector: str = "#live-video") -> dict[str, Any]:
    """Wait until the video decodes frames and its clock moves on; its playback numbers."""
    first = await until(lambda: frames(page, selector), 20)
    await until(
        lambda: frames(page, selector, after=first),
        10,
    )
    result: dict[str, Any] = await page.evaluate(PLAYBACK, selector)
    return result


async def frames(page: Any, selector: str, after: dict[str, Any] | None = None) -> Any:
    """Playback numbers once frames are decoded (or, given ``after``, once both moved on)."""
    now = await page.evaluate(PLAYBACK, selector)
    if after is None:
        return now if now["frames"] > 0 else None
    return now if now["frames"] > after["frames"] + 5 and now["t"] > after["t"] + 0.3 else None


def expected_only(watch: Watch, *allowed: str) -> list[str]:
    """The page's errors except those containing one of ``allowed``."""
    return [e for e in watch.errors if not any(a in e for a in allowed)]


async def count_is(locator: Any, n: int) -> bool:
    """Whether the locator matches exactly ``n`` elements."""
    return bool(await locator.count() == n)


async def transport_is(page: Any, name: str) -> bool:
    """Whether the live view says it plays over ``name`` (not still connecting)."""
    text = await page.text_content("#transport") or ""
    return text.startswith(name) and "connecting" not in text


async def stamp_or_none(page: Any, selector: str) -> tuple[int, float] | None:
    """``stamp``, or None while there is no picture yet."""
    try:
        return await stamp(page, selector)
    except ValueError:  # no picture yet
        return None
