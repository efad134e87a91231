"""The stream hub with real H.264 packets: GOP cache, slow subscribers, reconnects, idle stop."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from bridge.errors import DeviceUnreachable
from bridge.media.buffers import GopRing, Timeline
from bridge.media.hub import Hub, Session, Stream
from bridge.media.packet import MediaPacket

from .h264util import decode_all, encode


class FakeSession:
    """Plays real encoded packets at a steady pace, with RTP-like timestamps from ``pts0``."""

    def __init__(
        self,
        packets: list[MediaPacket],
        *,
        pts0: int = 0,
        interval: float = 0.002,
        hang: bool = False,
    ) -> None:
        self._packets = packets
        self._pts0 = pts0
        self._interval = interval
        self._hang = hang
        self.plis = 0
        self.closed = 0

    async def packets(self) -> AsyncIterator[MediaPacket]:
        for p in self._packets:
            await asyncio.sleep(self._interval)
            yield dataclasses.replace(
                p, pts=(p.pts + self._pts0) % (1 << 32), arrival=time.monotonic()
            )
        if self._hang:
            await asyncio.Event().wait()

    def request_keyframe(self) -> None:
        self.plis += 1

    async def close(self) -> None:
        self.closed += 1


class Connector:
    """Hands out sessions in order; raises the queued errors first."""

    def __init__(self, *sessions: FakeSession | Exception) -> None:
        self.queue = list(sessions)
        self.made: list[FakeSession] = []

    async def __call__(self) -> Session:
        item = self.queue.pop(0) if len(self.queue) > 1 else self.queue[0]
        if isinstance(item, Exception):
            raise item
        self.made.append(item)
        return item


def make_stream(connector: Connector, **opts: float) -> Stream:
    opts.setdefault("backoff", (0.01, 0.05))  # type: ignore[arg-type]
    hub = Hub(**opts)
    return hub.add("dev-1", "front-door", connector)


async def collect(sub: object, n: int, timeout: float = 10.0) -> list[MediaPacket]:
    out: list[MediaPacket] = []

    async def run() -> None:
        async for p in sub:  # type: ignore[attr-defined]
            out.append(p)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_subscriber_gets_every_frame_decodable() -> None:
    packets = list(encode(40))
    stream = make_stream(Connector(FakeSession(packets, hang=True)))
    with stream.subscribe("test") as sub:
        got = await collect(sub, 40)
    assert got[0].keyframe
    assert decode_all(got) == 40
    assert [p.pts for p in got] == sorted({p.pts for p in got})
    assert stream.codecs == {"video": "h264"}
    assert stream.sps is not None
    assert stream.pps is not None
    await stream.stop()


async def test_new_subscriber_starts_at_cached_keyframe() -> None:
    packets = list(encode(40, gop=10))
    stream = make_stream(Connector(FakeSession(packets, hang=True)))
    with stream.subscribe("first") as first:
        await collect(first, 25)
        with stream.subscribe("second") as second:
            late = second.get_nowait()  # the GOP cache is handed over at once, no waiting
            assert late is not None
            assert late.keyframe
            assert late.pts == packets[20].pts
    await stream.stop()


async def test_slow_subscriber_skips_to_keyframes_without_stalling_others() -> None:
    packets = list(encode(60, gop=10))
    stream = make_stream(Connector(FakeSession(packets, hang=True)))
    fast = stream.subscribe("fast")
    slow = stream.subscribe("slow", max_packets=5)
    got_slow: list[MediaPacket] = []

    async def read_slowly() -> None:
        async for p in slow:
            got_slow.append(p)
            await asyncio.sleep(0.02)  # ten times slower than the source

    reader = asyncio.create_task(read_slowly())
    got_fast = await collect(fast, 60)
    reader.cancel()
    assert len(got_fast) == 60  # the fast one lost nothing and was never held up
    assert slow.dropped > 0
    assert got_slow, "the slow subscriber got nothing at all"
    index = {p.pts: i for i, p in enumerate(packets)}
    positions = [index[p.pts] for p in got_slow]
    assert got_slow[0].keyframe
    for prev, (pos, pkt) in zip(
        positions, zip(positions[1:], got_slow[1:], strict=True), strict=False
    ):
        if pos != prev + 1:
            assert pkt.keyframe, f"resumed mid-GOP at frame {pos} after {prev}"
    fast.close()
    slow.close()
    await stream.stop()


async def test_reconnect_keeps_time_moving_forward() -> None:
    packets = list(encode(20, gop=10))
    # The first session's RTP clock is about to wrap; the second starts low; the third
    # goes away with an error first.
    connector = Connector(
        FakeSession(packets, pts0=(1 << 32) - 5 * 6000),
        FakeSession(packets, pts0=1234),
        DeviceUnreachable("no answer", status=599),
        FakeSession(packets, pts0=777_777, hang=True),
    )
    stream = make_stream(connector)
    with stream.subscribe("nvr") as sub:
        got = await collect(sub, 60)
    pts = [p.pts for p in got]
    assert all(b > a for a, b in itertools.pairwise(pts)), "timestamps went backwards"
    assert sum(p.discontinuity for p in got) == 2
    assert all(p.keyframe for p in got if p.discontinuity)
    assert stream.reconnects >= 3
    # Within a session the spacing is untouched: 15 fps at 90 kHz.
    assert pts[1] - pts[0] == 6000
    await stream.stop()


async def test_media_stall_triggers_reconnect() -> None:
    packets = list(encode(10, gop=10))
    connector = Connector(FakeSession(packets, hang=True), FakeSession(packets, hang=True))
    stream = make_stream(connector, media_timeout=0.2)
    with stream.subscribe("x") as sub:
        await collect(sub, 15)
    assert len(connector.made) >= 2
    assert connector.made[0].closed == 1
    await stream.stop()


async def test_idle_stop_closes_the_session() -> None:
    packets = list(encode(10))
    session = FakeSession(packets, hang=True)
    stream = make_stream(Connector(session), idle_timeout=0.1)
    sub = stream.subscribe("viewer")
    await collect(sub, 5)
    assert stream.state == "live"
    sub.close()
    for _ in range(100):
        if stream.state == "idle":
            break
        await asyncio.sleep(0.02)
    assert stream.state == "idle"
    assert session.closed == 1


async def test_keep_warm_runs_without_subscribers() -> None:
    packets = list(encode(10))
    session = FakeSession(packets, hang=True)
    stream = make_stream(Connector(session), idle_timeout=0.05)
    stream.keep_warm(0.3)
    assert await stream.wait_keyframe(5.0)
    await asyncio.sleep(0.1)
    assert stream.state == "live"  # still warm past the idle timeout
    await stream.stop()
    assert session.closed == 1


async def test_keyframe_request_reaches_session() -> None:
    session = FakeSession(list(encode(10)), hang=True)
    stream = make_stream(Connector(session))
    with stream.subscribe("x") as sub:
        await collect(sub, 2)
        stream.request_keyframe()
    assert session.plis == 1
    await stream.stop()


def test_ring_keeps_whole_gops_for_preroll() -> None:
    ring = GopRing(seconds=1.0)
    base = time.monotonic()
    packets = encode(60, gop=10)
    for i, p in enumerate(packets):  # 15 fps: 4 s of video
        ring.add(dataclasses.replace(p, arrival=base + i / 15))
    now = base + 59 / 15
    kept = list(ring)
    assert kept[0].keyframe
    assert now - kept[0].arrival >= 1.0  # reaches back at least the window
    pre = ring.since(2.0, now)  # asks for more than is kept: the oldest keyframe
    assert pre[0].keyframe
    assert decode_all(pre) == len(pre)
    assert ring.last_gop[0].pts == packets[50].pts


@pytest.mark.parametrize("start", [0, (1 << 32) - 9000])
def test_timeline_unwraps_rtp_clock(start: int) -> None:
    timeline = Timeline()
    timeline.new_session()
    base = time.monotonic()
    out = [
        timeline.map(
            MediaPacket(
                "video", "h264", b"", (start + n * 3000) % (1 << 32), 90000, n == 0, base + n / 30
            )
        ).pts
        for n in range(10)
    ]
    assert out == [n * 3000 for n in range(10)]
