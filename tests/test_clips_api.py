"""The clips API on a running bridge: a simulated press becomes a clip that is listed, served
with HTTP Range, thumbnailed and deleted; manual recording; paths cannot escape the folder."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import av
import pytest

from bridge.service import Bridge
from bridge.sim.world import SimWorld

from .serve_util import BridgeFactory, get_json

pytestmark = pytest.mark.slow

FAST_CLIPS = {
    "SKYBELL_BRIDGE_RECORD_PREROLL": "2",
    "SKYBELL_BRIDGE_RECORD_POSTROLL": "1",
    "SKYBELL_BRIDGE_EVENTS_POLL_INTERVAL": "1",
}


async def wait_for_clip(bridge: Bridge, **filters: str) -> dict[str, Any]:
    query = "&".join(f"{k}={v}" for k, v in {"state": "done", **filters}.items())
    for _ in range(300):
        _, body = await get_json(bridge.http_url + f"api/clips?{query}")
        if body["clips"]:
            clip: dict[str, Any] = body["clips"][0]
            return clip
        await asyncio.sleep(0.1)
    raise AssertionError(f"no clip for {filters}")


async def test_a_press_makes_a_clip_served_with_range(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge(**FAST_CLIPS)
    async with aiohttp.ClientSession() as http:
        async with http.post(bridge.http_url + "api/streams/warm?src=front-door&seconds=30"):
            pass
        await asyncio.sleep(4)  # the buffer fills, so the clip gets its pre-roll
        await world.press("Front Door")
        clip = await wait_for_clip(bridge, device="front-door", event="doorbell")
        assert clip["source"] == "live"
        assert clip["preroll"] >= 2.0
        assert clip["video_codec"] == "h264"
        assert clip["activity_id"]  # merged in from polling

        url = bridge.http_url + clip["video_url"].lstrip("/")
        async with http.get(url) as resp:
            assert resp.status == 200
            whole = await resp.read()
        with av.open(io.BytesIO(whole)) as container:
            frames = sum(1 for _ in container.demux(video=0))
        assert frames >= 15 * 2  # pre-roll and post-roll at 15 fps
        async with http.get(url, headers={"Range": "bytes=100-199"}) as resp:
            assert resp.status == 206
            assert resp.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
            assert await resp.read() == whole[100:200]

        async with http.get(bridge.http_url + clip["thumbnail_url"].lstrip("/")) as resp:
            assert resp.status == 200
            assert (await resp.read())[:2] == b"\xff\xd8"

        status, meta = await get_json(bridge.http_url + f"api/clips/{clip['id']}")
        assert status == 200
        assert meta["path"] == clip["path"]
        async with http.delete(bridge.http_url + f"api/clips/{clip['id']}") as resp:
            assert resp.status == 200
        status, body = await get_json(bridge.http_url + f"api/clips/{clip['id']}")
        assert status == 404
        assert body["error"] == f"no clip {clip['id']}"


async def test_manual_recording_start_and_stop(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(**FAST_CLIPS)
    async with aiohttp.ClientSession() as http:
        async with http.post(bridge.http_url + "api/record?src=back-garden") as resp:
            assert resp.status == 202
        await asyncio.sleep(3)
        _, active = await get_json(bridge.http_url + "api/record")
        assert [c["device"] for c in active["recording"]] == ["back-garden"]
        async with http.post(bridge.http_url + "api/record?src=back-garden&action=stop") as resp:
            body = await resp.json()
        assert body["stopped"] is True
        assert body["clip"]["event"] == "manual"
        async with http.post(bridge.http_url + "api/record?src=nowhere") as resp:
            assert resp.status == 404


@pytest.mark.parametrize(
    "path",
    [
        "api/clips/../../etc/passwd",
        "api/clips/%2e%2e%2f%2e%2e%2fetc%2fpasswd/video",
        "api/clips/1%2f..%2f..%2findex.sqlite3/video",
        "api/clips/-1/video",
        "api/clips/abc/thumbnail",
    ],
)
async def test_paths_cannot_escape_the_clips_folder(make_bridge: BridgeFactory, path: str) -> None:
    bridge = await make_bridge()
    async with (
        aiohttp.ClientSession() as http,
        http.get(bridge.http_url + path, allow_redirects=False) as resp,
    ):
        assert resp.status == 404
        assert b"root:" not in await resp.read()


async def test_clip_list_filters_and_bad_queries(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await get_json(bridge.http_url + "api/clips?device=front-door&limit=5")
    assert status == 200
    assert body == {"clips": [], "next_cursor": None}
    for bad in ("limit=x", "since=yesterday", "offset=-3", "cursor=zzz"):
        status, body = await get_json(bridge.http_url + f"api/clips?{bad}")
        assert status == 400, bad
        assert body["error"]
