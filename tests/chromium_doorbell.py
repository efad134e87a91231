"""A real libwebrtc doorbell: Chromium as the KVS master of a simulated doorbell's channel.

The simulator's own master is aiortc, which is kinder than a real camera: Chromium's H.264
sender sends one keyframe when a session starts and afterwards only on PLI/FIR, so a bridge
that waits for keyframes instead of asking for them shows no picture to late consumers.

``chromium_doorbell(world, bell)`` serves tests/chromium_doorbell/master.html from a tiny
aiohttp app on 127.0.0.1 (a secure context, so getUserMedia works), hands the page a freshly
presigned master URL for the doorbell's channel, switches the simulator's own master off for
that doorbell, and returns once the page is connected as master, so the bridge's first offer
already reaches it. ``stats()`` is the page's getStats summary (see master.js).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from bridge.sim.world import SimDoorbell, SimWorld

from .web_util import ARGS, CHROMIUM, HAVE_CHROMIUM, Watch

PAGE_DIR = Path(__file__).resolve().parent / "chromium_doorbell"
# Fake camera and microphone, and no permission prompt: the page is the doorbell.
MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@dataclass
class ChromiumDoorbell:
    """A running master page; ``browser`` may host other pages (viewers) too."""

    bell: SimDoorbell
    channel_arn: str
    browser: Any
    page: Any
    watch: Watch
    page_url: str

    async def stats(self) -> dict[str, Any]:
        """Per-peer and summed video outbound-rtp counters, connection states, recent log."""
        result: dict[str, Any] = await self.page.evaluate("window.stats()")
        return result


def _page_app(bell: SimDoorbell) -> web.Application:
    async def master_url(_request: web.Request) -> web.Response:
        # A fresh presign per connect: each URL lives only 299 s.
        return web.json_response({"url": bell.master_url()})

    app = web.Application()
    app.router.add_get("/master-url", master_url)
    app.router.add_static("/", PAGE_DIR)
    return app


@asynccontextmanager
async def chromium_doorbell(
    world: SimWorld,
    bell: SimDoorbell,
    *,
    source: str = "camera",
    width: int = 640,
    height: int = 480,
    fps: int = 15,
    browser: Any = None,
) -> AsyncIterator[ChromiumDoorbell]:
    """Chromium as ``bell``'s KVS master until the block ends (``source``: camera or canvas).

    Pass the ``browser`` of another ChromiumDoorbell to run several doorbells in one Chromium.
    """
    if not HAVE_CHROMIUM:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap --test")
    bell.external_master = True
    runner = web.AppRunner(_page_app(bell), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    page_url = (
        f"http://{host}:{port}/master.html?source={source}&width={width}&height={height}&fps={fps}"
    )
    arn = parse_qs(urlsplit(bell.master_url()).query)["X-Amz-ChannelARN"][0]
    try:
        async with AsyncExitStack() as stack:
            if browser is None:
                playwright = await stack.enter_async_context(async_playwright())
                browser = await playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=ARGS + MEDIA_ARGS
                )
                stack.push_async_callback(browser.close)
            context = await browser.new_context(permissions=["camera", "microphone"])
            stack.push_async_callback(context.close)
            page = await context.new_page()
            watch = Watch(page)
            await page.goto(page_url)
            await page.evaluate("window.ready")
            await asyncio.wait_for(world.kvs.wait_master(arn), 10)
            yield ChromiumDoorbell(bell, arn, browser, page, watch, page_url)
    finally:
        bell.external_master = False
        await runner.cleanup()
