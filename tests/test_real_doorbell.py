"""The bridge against a real libwebrtc doorbell: Chromium as the KVS master (tests/chromium_doorbell).

libwebrtc sends a keyframe at the start of a session and afterwards only when asked (PLI/FIR).
Consumers that arrive long after the start must still get pictures at once, which only works
if the bridge asks the doorbell for keyframes; the master's own getStats is the witness.
"""

from __future__ import annotations

import io

import aiohttp
import av
import pytest

from bridge.sim.world import SimWorld

from .chromium_doorbell import chromium_doorbell
from .fake_doorbell import run
from .serve_util import FRONT, BridgeFactory

pytestmark = pytest.mark.slow


@pytest.mark.timeout(90)
async def test_bridge_gets_live_pictures_from_a_chromium_doorbell(
    world: SimWorld, make_bridge: BridgeFactory
) -> None:
    async with chromium_doorbell(world, world.doorbell(FRONT)) as door:
        bridge = await make_bridge()
        url = bridge.http_url + "api/frame.jpeg?src=front-door"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["X-Snapshot-Source"] == "live"
            jpeg = await resp.read()
        with av.open(io.BytesIO(jpeg), format="mjpeg") as container:
            frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (640, 480)
        code, _, err = await run(
            "ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i",
            bridge.rtsp_url + "front-door", "-frames:v", "10", "-f", "null", "-",
        )  # fmt: skip
        assert code == 0, err
        stats = await door.stats()
        assert world.doorbell(FRONT).offers == 0  # the simulator's own master never answered
        live = [p for p in stats["peers"] if p["connectionState"] == "connected"]
        assert live, stats
        assert {p["mimeType"] for p in live} == {"video/H264"}
        assert stats["total"]["framesEncoded"] > 10
        for peer in live:  # media between 127.0.0.1 ports only (the remote is peer-reflexive)
            local, remote = peer["pair"].split(" <-> ")
            assert local.startswith("127.0.0.1:"), peer
            ports = {c.split()[5] for c in peer["viewerCandidates"] if c.split()[4] == "127.0.0.1"}
            assert remote.rsplit(":", 1)[1] in ports, peer
