"""MJPEG and JPEG snapshots through HTTP on 127.0.0.1: aiohttp's multipart reader, ffmpeg, and the
cloud snapshot as the fallback when the live view fails."""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web

from bridge.errors import CloudConnectionError
from bridge.media.hub import Hub, LiveCall, Stream
from bridge.media.packet import MediaPacket
from bridge.mjpeg import Fallback, MjpegOptions, MjpegService
from bridge.routes.mjpeg import MJPEG, SOURCE_HEADER, cloud_fallback, setup
from bridge.sim.cloud import SimCloud

from .app_util import make_app
from .conftest import ClientFactory
from .fake_doorbell import FPS, HEIGHT, WIDTH, Connector, noisy_video, run

FRONT = "0579ce92-72a5-4b1f-8191-e360876705c3"  # a device of the simulated cloud


@dataclass
class Rig:
    app: web.Application
    http: aiohttp.ClientSession
    base: str  # http://127.0.0.1:PORT
    hub: Hub
    stream: Stream

    @property
    def service(self) -> MjpegService:
        return self.app[MJPEG]

    def stats(self) -> dict[str, Any]:
        return self.service.stats()[self.stream.name]

    def url(self, path: str, **query: Any) -> str:
        params = "&".join(f"{k}={v}" for k, v in {"src": self.stream.name, **query}.items())
        return f"{self.base}{path}?{params}"


RigFactory = Callable[..., Awaitable[Rig]]


class BurstySession:
    """Live-paced video that stalls, then delivers the stalled seconds at once (as a relay does
    after a network hiccup), then carries on."""

    def __init__(self, stall_from: float, stall_to: float) -> None:
        self.stall = (stall_from, stall_to)
        self.closed = False

    async def packets(self) -> AsyncIterator[MediaPacket]:
        video, start, n = noisy_video(), time.monotonic(), 0
        while not self.closed:
            due = n / FPS
            if self.stall[0] <= due < self.stall[1]:
                due = self.stall[1]
            await asyncio.sleep(max(0.0, start + due - time.monotonic()))
            src = video[n % len(video)]
            yield MediaPacket(
                "video", "h264", src.data, n * 90000 // FPS, 90000, src.keyframe, time.monotonic()
            )
            n += 1

    def request_keyframe(self, kind: str = "pli") -> None:
        pass

    async def close(self) -> None:
        self.closed = True


class FailingConnector:
    """A doorbell whose live view never starts (the cloud refuses the connection)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> LiveCall:
        self.calls += 1
        raise CloudConnectionError("connection refused")


@pytest.fixture
async def make_rig() -> AsyncIterator[RigFactory]:
    # A plain AppRunner, as the bridge runs: unlike aiohttp's TestServer it does not cancel a
    # handler when its client goes, so the tests see how viewers are really released.
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def factory(
        connector: Callable[[], Awaitable[LiveCall]] | None = None,
        fallback: Fallback | None = None,
        **options: Any,
    ) -> Rig:
        # The simulated cloud's device id, so the cloud fallback finds this doorbell.
        hub = Hub(
            backoff=options.pop("backoff", (0.05, 0.2)),
            idle_timeout=5.0,
            silence_timeout=options.pop("silence_timeout", 2.0),
        )
        stream = hub.add(FRONT, "front-door", connector or Connector())
        opts = MjpegOptions(**options)

        def wire(app: web.Application) -> None:
            setup(app, opts, fallback)

        app = make_app(hub, wire)
        runner = web.AppRunner(app, shutdown_timeout=5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        http = aiohttp.ClientSession()
        cleanups.extend((http.close, runner.cleanup, hub.close))
        port = runner.addresses[0][1]
        return Rig(app, http, f"http://127.0.0.1:{port}", hub, stream)

    yield factory
    for cleanup in cleanups:
        await cleanup()


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Decode a JPEG for real and return its size."""
    assert data[:2] == b"\xff\xd8"
    with av.open(io.BytesIO(data), "r") as container:
        frame = next(container.decode(video=0))
        assert container.streams.video[0].codec_context.name == "mjpeg"
    return frame.width, frame.height


async def read_parts(resp: aiohttp.ClientResponse, count: int) -> list[bytes]:
    """``count`` parts of a multipart/x-mixed-replace response, checking each part's headers."""
    reader = aiohttp.MultipartReader.from_response(resp)
    parts = []
    for _ in range(count):
        part = await asyncio.wait_for(reader.next(), 10)
        assert isinstance(part, aiohttp.BodyPartReader)
        assert part.headers["Content-Type"] == "image/jpeg"
        body = await part.read()
        assert len(body) == int(part.headers["Content-Length"])
        parts.append(bytes(body))
    return parts


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition the code under test reaches asynchronously."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - the state belongs to the code under test
            await asyncio.sleep(0.05)


async def snapshot(rig: Rig, **query: Any) -> tuple[str, tuple[int, int]]:
    async with rig.http.get(rig.url("/api/frame.jpeg", **query)) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "image/jpeg"
        return resp.headers[SOURCE_HEADER], jpeg_size(await resp.read())


# -- MJPEG ---------------------------------------------------------------------------------------


async def test_mjpeg_parts_are_real_jpegs_and_the_decoder_stops_after(make_rig: RigFactory) -> None:
    rig = await make_rig(fps=15)
    async with rig.http.get(rig.url("/api/stream.mjpeg")) as resp:
        assert resp.status == 200
        assert resp.content_type == "multipart/x-mixed-replace"
        assert "no-cache" in resp.headers["Cache-Control"]
        parts = await read_parts(resp, 6)
        assert rig.stats()["viewers"] == 1
        assert rig.stats()["decoding"] == "all"
    assert {jpeg_size(p) for p in parts} == {(WIDTH, HEIGHT)}
    assert len(set(parts)) == 6  # a moving picture, not one frame repeated
    # The viewer left: the decoder's subscription goes, so the hub may go idle.
    await wait_for(lambda: not rig.stream.subscribers)
    assert rig.stats()["decoding"] == "off"
    assert rig.stats()["viewers"] == 0


async def test_ffmpeg_reads_the_mjpeg_url(make_rig: RigFactory, tmp_path: Path) -> None:
    rig = await make_rig()
    code, _, err = await run(
        "ffmpeg", "-v", "error", "-f", "mpjpeg", "-i", rig.url("/api/stream.mjpeg", width=80),
        "-frames:v", "5", "-c", "copy", str(tmp_path / "frame%d.jpg"),
    )  # fmt: skip
    assert code == 0, err
    frames = await asyncio.to_thread(lambda: [f.read_bytes() for f in tmp_path.glob("*.jpg")])
    assert len(frames) == 5
    assert {jpeg_size(f) for f in frames} == {(80, 64)}
    await wait_for(lambda: not rig.stream.subscribers)


async def test_ten_viewers_share_one_encoder(make_rig: RigFactory) -> None:
    rig = await make_rig()  # default 10 fps from a 15 fps source
    url = rig.url("/api/stream.mjpeg")
    responses = [await rig.http.get(url) for _ in range(10)]
    try:
        await wait_for(lambda: rig.stats()["viewers"] == 10)
        before = rig.stats()
        seen = await asyncio.gather(*(read_parts(r, 8) for r in responses))
        after = rig.stats()
    finally:
        for r in responses:
            r.close()
    assert after["outputs"] == 1
    assert after["encoders"] == 1
    decoded = after["frames_decoded"] - before["frames_decoded"]
    encoded = after["frames_encoded"] - before["frames_encoded"]
    assert 0 < encoded <= decoded  # once per frame for all ten, never once per viewer
    # Every viewer got the very same bytes for the same frame.
    counts = Counter(jpeg for parts in seen for jpeg in set(parts))
    assert counts.most_common(1)[0][1] == 10
    await wait_for(lambda: not rig.stream.subscribers)
    assert rig.stats()["encoders"] == 0


async def test_fps_cap_encodes_only_the_frames_due(make_rig: RigFactory) -> None:
    rig = await make_rig()
    async with rig.http.get(rig.url("/api/stream.mjpeg", fps=5)) as resp:
        await read_parts(resp, 1)
        before = rig.stats()
        parts = await read_parts(resp, 6)
        after = rig.stats()
    decoded = after["frames_decoded"] - before["frames_decoded"]
    encoded = after["frames_encoded"] - before["frames_encoded"]
    # Every frame is decoded (P-frames need their references), a third of them encoded.
    assert len(parts) == 6
    assert encoded >= 6
    assert decoded >= 2 * encoded


@pytest.mark.slow
async def test_a_burst_of_late_frames_skips_to_the_newest_keyframe(make_rig: RigFactory) -> None:
    session = BurstySession(1.0, 3.5)

    async def connect() -> LiveCall:
        return session

    # The stall outlasts the hub's default silence_timeout (2 s), which would rightly reconnect
    # instead; a relay whose hiccups are this long is what streams.silence_timeout is for.
    rig = await make_rig(connect, fps=15, silence_timeout=5.0)
    async with rig.http.get(rig.url("/api/stream.mjpeg")) as resp:
        await read_parts(resp, 10)
        async with asyncio.timeout(10):
            while rig.stats()["packets_skipped"] == 0:
                await read_parts(resp, 1)
        after_burst = await read_parts(resp, 10)  # and the picture goes on
    # 2.5 s of video came at once: it was not decoded frame by frame to catch up.
    assert rig.stats()["packets_skipped"] >= FPS
    assert len(set(after_burst)) == 10


async def test_a_viewer_leaving_a_stalled_stream_is_released(make_rig: RigFactory) -> None:
    session = BurstySession(0.2, 30.0)  # no frame for a long while after the first few

    async def connect() -> LiveCall:
        return session

    rig = await make_rig(connect, fps=15)
    async with rig.http.get(rig.url("/api/stream.mjpeg")) as resp:
        await read_parts(resp, 2)
        await asyncio.sleep(0.5)  # into the stall
    # No frame comes to fail a write, yet the handler notices the client went.
    await wait_for(lambda: not rig.stream.subscribers, timeout=5)
    assert rig.stats()["viewers"] == 0


async def test_mjpeg_with_no_picture_is_503_and_shutdown_ends_viewers(
    make_rig: RigFactory,
) -> None:
    dead = await make_rig(FailingConnector(), snapshot_timeout=0.5)
    async with dead.http.get(dead.url("/api/stream.mjpeg")) as resp:
        assert resp.status == 503
        assert "no picture" in (await resp.json())["error"]
    assert not dead.stream.subscribers

    rig = await make_rig()
    async with rig.http.get(rig.url("/api/stream.mjpeg")) as resp:
        await read_parts(resp, 1)
        await rig.service.close()
        await asyncio.wait_for(resp.read(), 10)  # the response ends instead of hanging
    await rig.service.close()  # idempotent
    await wait_for(lambda: not rig.stream.subscribers)


# -- snapshots -----------------------------------------------------------------------------------


async def test_snapshot_live_then_cache_and_resized(make_rig: RigFactory) -> None:
    rig = await make_rig()
    assert await snapshot(rig) == ("live", (WIDTH, HEIGHT))
    assert await snapshot(rig) == ("cache", (WIDTH, HEIGHT))
    assert await snapshot(rig, width=80) == ("cache", (80, 64))
    assert await snapshot(rig, height=64) == ("cache", (80, 64))
    assert await snapshot(rig, width=100, height=40) == ("cache", (50, 40))
    assert await snapshot(rig, width=5000) == ("cache", (WIDTH, HEIGHT))  # never upscaled
    assert await snapshot(rig, w=41) == ("cache", (40, 32))  # go2rtc's short names; even sides
    assert rig.service.stats()["front-door"]["snapshots"] == {"live": 1, "cache": 6}
    # Snapshots decode keyframes only, and leave no subscription behind.
    assert rig.stats()["frames_decoded"] <= 2
    assert not rig.stream.subscribers


async def test_snapshot_size_cap_and_stale_picture(make_rig: RigFactory) -> None:
    rig = await make_rig(width=100, snapshot_max_age=0.3)
    assert await snapshot(rig) == ("live", (100, 80))
    await asyncio.sleep(0.5)
    # Too old now: the next keyframe is decoded (the hub kept the session warm meanwhile).
    assert await snapshot(rig, width=120) == ("live", (100, 80))
    assert rig.service.stats()["front-door"]["snapshots"] == {"live": 2}
    assert not rig.stream.subscribers


async def test_snapshot_while_watching_comes_from_the_running_decoder(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    async with rig.http.get(rig.url("/api/stream.mjpeg")) as resp:
        await read_parts(resp, 2)
        assert await snapshot(rig, width=80) == ("cache", (80, 64))
        assert rig.stats()["viewers"] == 1


async def test_cloud_snapshot_when_the_live_view_fails(
    make_rig: RigFactory, make_client: ClientFactory, sim: SimCloud
) -> None:
    connector = FailingConnector()
    rig = await make_rig(connector, cloud_fallback(make_client()))
    assert await snapshot(rig) == ("cloud", (640, 360))
    assert await snapshot(rig, width=320) == ("cloud", (320, 180))
    assert connector.calls >= 1
    sim.faults.unreachable.add(FRONT)
    async with rig.http.get(rig.url("/api/frame.jpeg")) as resp:
        assert resp.status == 502
        message = (await resp.json())["error"]
    assert "cloud snapshot failed" in message
    assert "connection refused" in message or "failing" in message


async def test_a_first_failed_attempt_falls_back_without_waiting_out_the_timeout(
    make_rig: RigFactory, make_client: ClientFactory
) -> None:
    # The hub is still retrying (not yet "error"), but the stream never produced a picture:
    # the snapshot must not sit out its 60 s timeout before asking the cloud.
    rig = await make_rig(
        FailingConnector(), cloud_fallback(make_client()), snapshot_timeout=60, backoff=(5, 60)
    )
    source, _ = await asyncio.wait_for(snapshot(rig), 20)
    assert source == "cloud"


async def test_no_fallback_is_503(make_rig: RigFactory) -> None:
    rig = await make_rig(FailingConnector(), snapshot_timeout=5)
    async with rig.http.get(rig.url("/api/frame.jpeg")) as resp:
        assert resp.status == 503
        assert "live view" in (await resp.json())["error"]


# -- bad requests --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/frame.jpeg", "/api/stream.mjpeg"])
async def test_unknown_stream_and_junk_queries(make_rig: RigFactory, path: str) -> None:
    rig = await make_rig()
    async with rig.http.get(f"{rig.base}{path}?src=nope") as resp:
        assert resp.status == 404
        body = await resp.json()
        assert body["streams"] == ["front-door"]
    async with rig.http.get(rig.base + path) as resp:
        assert resp.status == 400
    for junk in (
        {"fps": "abc"},
        {"width": "-5"},
        {"height": "0"},
        {"width": "nan"},
        {"fps": "inf"},
    ):
        async with rig.http.get(rig.url(path, **junk)) as resp:
            assert resp.status == 400, junk
            assert "must be a positive number" in (await resp.json())["error"]
    assert not rig.stream.subscribers


def test_requests_are_clamped_into_the_options() -> None:
    # The options' own ranges (quality 2..31, fps 0.2..30) are the loader's: tests/test_config.py.
    spec = MjpegOptions(fps=10, width=640).spec(fps=1000, width=10_000, height=1)
    assert (spec.fps, spec.width, spec.height) == (30, 640, 16)
