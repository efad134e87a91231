"""The recorder end to end: simulated cloud and doorbell, real KVS signaling and WebRTC, and the
doorbell's burned-in clock read back from the recorded clip to measure the real pre-roll."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import pytest

from bridge.media.hub import Hub
from bridge.media.live import CloudLiveCall, open_live_call
from bridge.record import ClipStore, Recorder, RecordOptions
from bridge.redact import Secret
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY
from bridge.sim.picture import read_stamp
from bridge.sim.world import SimWorld
from bridge.skybell import SkyBellClient

pytestmark = pytest.mark.slow

FRONT = "0579ce92-72a5-4b1f-8191-e360876705c3"


@pytest.fixture
async def world() -> AsyncIterator[SimWorld]:
    sim = SimWorld()
    await sim.start()
    yield sim
    await sim.close()


async def test_clip_holds_the_preroll_by_the_doorbells_own_clock(
    world: SimWorld, tmp_path: Path
) -> None:
    world.doorbell(FRONT).configure(image_quality=0, fps=15)  # 854x480
    world.cloud.devices[FRONT].settings["image_quality"] = 0
    async with aiohttp.ClientSession() as http:
        client = SkyBellClient(
            http, base_url=world.base_url + API_PREFIX, api_key=Secret(DEFAULT_API_KEY)
        )

        async def connect() -> CloudLiveCall:
            return await open_live_call(client, http, FRONT)

        hub = Hub(backoff=(0.05, 0.5))
        stream = hub.add(FRONT, "front-door", connect)
        store = ClipStore(tmp_path / "clips")
        options = RecordOptions(preroll=5.0, postroll=2.0, min_free_mb=0, reserve_bytes=0)
        recorder = Recorder(hub, store, options)
        await recorder.start()
        try:
            # Kept warm, as record.keep_warm does: pre-roll is wanted, so the hub asks an
            # on-request doorbell for a keyframe every keyframe_interval (2 s). Without that the
            # only keyframe would be the session's first, 9 s back.
            stream.keep_warm(60)
            with stream.subscribe("viewer") as viewer:
                await asyncio.wait_for(viewer.get(), 30)
                await asyncio.sleep(9.0)  # live for well more than the pre-roll
                assert stream.state == "live"
                triggered_ms = time.time() * 1000
                job = await recorder.trigger("front-door", "doorbell")
                assert job is not None
                clip = await asyncio.wait_for(job.wait(), 30)
        finally:
            await recorder.close()
            await hub.close()
        assert clip is not None
        assert clip.state == "done"
        path = store.file_of(clip)
        with av.open(str(path)) as container:
            assert {s.type: s.codec_context.name for s in container.streams} == {
                "video": "h264",
                "audio": "aac",
            }
            stamps = [
                read_stamp(frame.to_ndarray(format="gray"))
                for frame in container.decode(container.streams.video[0])
            ]
        store.close()
    counters = [n for n, _ in stamps]
    assert all(b == a + 1 for a, b in itertools.pairwise(counters)), "frames missing in the clip"
    measured = (triggered_ms - stamps[0][1]) / 1000
    after = (stamps[-1][1] - triggered_ms) / 1000
    print(
        f"\nmeasured pre-roll {measured:.2f} s (index says {clip.preroll:.2f} s), "
        f"post-roll {after:.2f} s, {len(stamps)} frames, {clip.duration:.2f} s"
    )
    assert measured >= 5.0
    assert measured <= 5.0 + 2.0 + 0.5  # at most one keyframe interval more than asked
    assert abs(measured - clip.preroll) < 0.3
    assert after >= 2.0 - 0.2
    assert abs(len(stamps) / 15 - clip.duration) < 0.2
