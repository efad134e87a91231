"""Issue 12, finding 11: RSS rose over rounds of 200 MJPEG viewers. Is anything left behind?

The measurement is scripts/bench/mjpeg_memory.py (RSS levels off after a few rounds; what grows
is free memory glibc keeps after the JPEG encoders' large buffers, not objects). This test holds
the behaviour that makes it so: once every viewer of a round has gone, the stream has no
subscriber and no MJPEG viewer, and the Python objects the rounds made are gone too, so a
further round adds none.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter

import aiohttp
import pytest

from .serve_util import BridgeFactory, get_json

VIEWERS = 20
BOUNDARY_FRAMES = 2  # parts each viewer reads before it leaves


async def _watch(http: aiohttp.ClientSession, url: str) -> None:
    async with http.get(url) as resp:
        assert resp.status == 200
        seen = 0
        async for line in resp.content:
            if line.startswith(b"Content-Type: image/jpeg"):
                seen += 1
                if seen >= BOUNDARY_FRAMES:
                    return


async def _round(base: str) -> None:
    url = base + "api/stream.mjpeg?src=front-door&width=320"
    async with aiohttp.ClientSession() as http:
        await asyncio.wait_for(asyncio.gather(*(_watch(http, url) for _ in range(VIEWERS))), 60)
    for _ in range(100):  # the bridge notices each closed connection on its next write
        _, body = await get_json(base + "api/streams?src=front-door")
        if not body["viewers"]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"viewers left behind: {body['viewers']}")


def _bridge_objects() -> Counter[str]:
    gc.collect()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        module = getattr(kind, "__module__", None)
        if isinstance(module, str) and module.startswith("bridge."):
            counts[f"{module}.{kind.__qualname__}"] += 1
    return counts


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_finding_11_mjpeg_viewer_rounds_leave_nothing_behind(
    make_bridge: BridgeFactory,
) -> None:
    bridge = await make_bridge()
    await _round(bridge.http_url)  # warm-up: decoder, encoder and caches made once
    await _round(bridge.http_url)
    after_two = _bridge_objects()
    await _round(bridge.http_url)
    await _round(bridge.http_url)
    after_four = _bridge_objects()
    # Another 40 viewers came and went: a leak of even one object per viewer would show.
    # Packets are the live stream's own time-bounded ring, which fills as the session ages.
    grown = after_four - after_two
    del grown["bridge.media.packet.MediaPacket"]
    assert sum(grown.values()) < VIEWERS, grown
