"""HLS / LL-HLS across mid-stream resolution changes: a new init section and a discontinuity
per change, read by ffmpeg, PyAV, and the page's own MSE player in headless Chromium."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from bridge.hls import HlsOptions
from bridge.media.hub import Hub, Stream
from bridge.routes import hls
from bridge.routes.web import WEB_ROOT

from .app_util import make_app
from .fake_doorbell import run
from .hls_util import Playlist, parse_media
from .resolution_util import BIG, SMALL, ChangingConnector, changing_stream
from .test_resolution_change import _DECODE_ERRORS, BOTH
from .web_util import (  # noqa: F401 - browser_fixture is a fixture
    browser_fixture,
    new_page,
    until,
)

WEB = WEB_ROOT
# One segment per 1 s section (the change forces the cut), three in the window: discontinuities
# slide out every second, so EXT-X-DISCONTINUITY-SEQUENCE has to move.
OPTIONS = {"segment_target": 1.0, "part_target": 0.25, "window": 3}


@dataclass
class Rig:
    server: TestServer
    hub: Hub
    stream: Stream
    http: aiohttp.ClientSession

    def url(self, path: str, **query: Any) -> str:
        return str(self.server.make_url(path).with_query({"src": "front-door", **query}))

    async def get(self, url: str) -> bytes:
        async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=20)) as resp:
            body = await resp.read()
            assert resp.status == 200, body
            return body

    async def playlist(self, **query: Any) -> tuple[str, Playlist]:
        url = self.url("/api/hls/live.m3u8", **query)
        return url, parse_media((await self.get(url)).decode())


@pytest.fixture
async def rig(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[Rig]:
    hub, stream = changing_stream(ChangingConnector())

    def wire(app: web.Application) -> None:
        hls.setup(app, HlsOptions(**OPTIONS))
        # The page's scripts, for the MSE player test: the player module as the page loads it.
        app.router.add_static("/js", WEB / "js")
        app.router.add_get("/", _player_page)

    server = await aiohttp_server(make_app(hub, wire))
    async with aiohttp.ClientSession() as http:
        yield Rig(server, hub, stream, http)
    await server.close()
    await hub.close()


def _decode(data: bytes) -> list[tuple[int, int]]:
    with av.open(io.BytesIO(data), "r") as container:
        return [(f.width, f.height) for f in container.decode(video=0)]


@pytest.mark.slow
async def test_each_change_has_a_new_map_and_a_discontinuity(rig: Rig) -> None:
    maps: set[str] = set()
    sequences: list[int] = []
    checked_parts = 0
    for _ in range(80):
        url, pl = await rig.playlist()
        sequences.append(int(pl.tags["EXT-X-DISCONTINUITY-SEQUENCE"]))
        maps |= {s.map_uri for s in pl.segments}
        # A new init section never starts without a discontinuity in front of it.
        for before, after in zip(pl.segments, pl.segments[1:], strict=False):
            if after.map_uri != before.map_uri:
                assert after.discontinuity, pl.text
        assert re.search(r"#EXT-X-DISCONTINUITY\n#EXT-X-MAP:", pl.text) or len(maps) == 1
        # Each segment decodes with its own init section, at one size.
        for s in pl.segments:
            init = await rig.get(str(URL(url).join(URL(s.map_uri))))
            sizes = _decode(init + await rig.get(str(URL(url).join(URL(s.uri)))))
            assert len(set(sizes)) == 1, sizes
            assert sizes[0] in BOTH
        # LL-HLS: the parts of the segment being built decode with the newest init section.
        building = [p for p in pl.parts if p.msn > max((s.msn for s in pl.segments), default=-1)]
        if building and building[0].independent:
            newest = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', pl.text)[-1]
            data = await rig.get(str(URL(url).join(URL(newest))))
            for part in building:
                data += await rig.get(str(URL(url).join(URL(part.uri))))
            assert set(_decode(data)) <= BOTH
            checked_parts += 1
        if len(maps) >= 4 and sequences[-1] >= 2 and checked_parts >= 3:
            break
        await asyncio.sleep(0.3)
    assert len(maps) >= 4, "a new EXT-X-MAP URI per change"
    assert sequences == sorted(sequences)
    assert sequences[-1] >= 2, "discontinuities that slid out are counted"
    assert checked_parts >= 3


@pytest.mark.slow
@pytest.mark.parametrize("low_latency", ["1", "0"])
async def test_ffmpeg_decodes_both_sizes_from_the_playlist(rig: Rig, low_latency: str) -> None:
    await rig.playlist()  # starts the packager; the first answer waits for a whole segment
    code, _, err = await run(
        "ffmpeg", "-hide_banner", "-v", "info", "-i", rig.url("/api/stream.m3u8", ll=low_latency),
        "-an", "-vf", "showinfo", "-t", "5", "-f", "null", "-",
        timeout=60,
    )  # fmt: skip
    assert code == 0, err
    sizes = [(int(w), int(h)) for w, h in re.findall(r" s:(\d+)x(\d+) ", err)]
    assert set(sizes) == BOTH, sizes
    assert not _DECODE_ERRORS.search(err), err


# -- the page's MSE player ---------------------------------------------------------------------

_PAGE = """<!doctype html><html><head><link rel="icon" href="data:,"></head><body><video id="v" muted playsinline></video>
<script type="module">
import { HlsPlayer } from '/js/players/hls.js';
const v = document.getElementById('v');
window.sizes = [];
const seen = (w, h) => { const last = window.sizes[window.sizes.length - 1];
  if (!last || last[0] !== w || last[1] !== h) window.sizes.push([w, h]); };
const frame = (now, meta) => { seen(meta.width, meta.height); v.requestVideoFrameCallback(frame); };
v.requestVideoFrameCallback(frame);
window.player = new HlsPlayer(v, 'front-door');
window.started = window.player.start(new AbortController().signal).then(() => 'ok', (e) => String(e));
</script></body></html>"""


async def _player_page(_: web.Request) -> web.Response:
    return web.Response(text=_PAGE, content_type="text/html")


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("change_type", [True, False], ids=["changeType", "new-MediaSource"])
async def test_the_page_mse_player_follows_the_new_init_sections(
    rig: Rig, browser: Any, change_type: bool
) -> None:
    page, watch = await new_page(browser)
    if not change_type:
        # A browser without SourceBuffer.changeType: the player starts a new MediaSource.
        await page.add_init_script("delete SourceBuffer.prototype.changeType;")
    await page.goto(str(rig.server.make_url("/")))
    assert await page.evaluate("window.started") == "ok"

    async def changed_twice() -> bool:
        sizes = [tuple(s) for s in await page.evaluate("window.sizes")]
        return len(sizes) >= 3 and set(sizes) == BOTH

    await until(changed_twice, 30, step=0.2)
    state = await page.evaluate(
        """() => { const v = document.getElementById('v'), p = window.player;
        return {inits: p.initSections, codecs: p.codecChanges, failed: String(p.failed || ''),
                error: v.error && v.error.message, frames: v.getVideoPlaybackQuality().totalVideoFrames,
                t: v.currentTime, w: v.videoWidth}; }"""
    )
    assert state["failed"] == ""
    assert state["error"] is None
    assert state["inits"] >= 3, state
    # x264 picks H.264 level 1.2 for 320x240 and 1.0 for 160x128: a new codec string each time.
    assert state["codecs"] >= 2, state
    await page.wait_for_timeout(1500)
    later = await page.evaluate(
        "() => { const v = document.getElementById('v');"
        " return {frames: v.getVideoPlaybackQuality().totalVideoFrames, t: v.currentTime}; }"
    )
    assert later["frames"] > state["frames"] + 10, "still playing after the changes"
    assert later["t"] > state["t"] + 1.0
    assert watch.errors == []
    assert {tuple(s) for s in await page.evaluate("window.sizes")} == {BIG, SMALL}
