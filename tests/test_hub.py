"""The stream hub with real H.264 packets: GOP cache, slow subscribers, reconnects, idle stop."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest

from bridge.errors import DeviceUnreachable
from bridge.media.buffers import GopRing, Subscriber, Timeline
from bridge.media.hub import Hub, LiveCall, Stream
from bridge.media.packet import MediaPacket

from .h264util import decode_all, encode, x264


class FakeSession:
    """Plays real encoded packets at a steady pace, with RTP-like timestamps from ``pts0``."""

    def __init__(
        self,
        packets: list[MediaPacket],
        *,
        pts0: int = 0,
        interval: float = 0.002,
        hang: bool = False,
        first_delay: float = 0.0,
    ) -> None:
        self._packets = packets
        self._first_delay = first_delay
        self._pts0 = pts0
        self._interval = interval
        self._hang = hang
        self.plis = 0
        self.closed = 0

    async def packets(self) -> AsyncIterator[MediaPacket]:
        await asyncio.sleep(self._first_delay)
        for p in self._packets:
            await asyncio.sleep(self._interval)
            yield dataclasses.replace(
                p, pts=(p.pts + self._pts0) % (1 << 32), arrival=time.monotonic()
            )
        if self._hang:
            await asyncio.Event().wait()

    def request_keyframe(self, kind: str = "pli") -> None:
        self.plis += 1

    async def close(self) -> None:
        self.closed += 1


class Connector:
    """Hands out sessions in order; raises the queued errors first."""

    def __init__(self, *sessions: FakeSession | Exception) -> None:
        self.queue = list(sessions)
        self.made: list[FakeSession] = []

    async def __call__(self) -> LiveCall:
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


async def test_silence_once_media_flows_reconnects_without_waiting_media_timeout() -> None:
    # A doorbell that vanishes mid-stream keeps its connection "connected" and just stops
    # sending; a 60 s media_timeout would leave the NVR without pictures for a minute.
    packets = list(encode(10, gop=10))
    connector = Connector(FakeSession(packets, hang=True), FakeSession(packets, hang=True))
    stream = make_stream(connector, media_timeout=60, silence_timeout=0.3)
    with stream.subscribe("nvr") as sub:
        await collect(sub, 15)
    assert len(connector.made) == 2
    assert connector.made[0].closed == 1
    await stream.stop()


async def test_the_first_packet_may_take_up_to_media_timeout() -> None:
    # Waking a doorbell and negotiating takes seconds: only silence after media counts.
    packets = list(encode(10, gop=10))
    connector = Connector(FakeSession(packets, hang=True, first_delay=0.8))
    stream = make_stream(connector, media_timeout=5, silence_timeout=0.2)
    with stream.subscribe("nvr") as sub:
        await collect(sub, 10)
    assert len(connector.made) == 1
    assert stream.reconnects == 0
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


# -- keyframes on request (a libwebrtc-like sender) ------------------------------------------------


class OnRequestSession:
    """Like libwebrtc: one IDR when the session starts, then only when asked.

    Real x264 frames at a live pace; ``answers`` says which requests it honours (none: a sender
    that ignores them all).
    """

    def __init__(self, fps: int = 30, answers: tuple[str, ...] = ("pli", "fir")) -> None:
        self.fps = fps
        self.answers = answers
        self.requests = {"pli": 0, "fir": 0}
        self.keyframes = 0
        self.closed = 0
        self._force = False

    async def packets(self) -> AsyncIterator[MediaPacket]:
        codec = x264(64, 64, self.fps, 1_000_000)
        start = time.monotonic()
        for n in itertools.count():
            await asyncio.sleep(max(0.0, start + n / self.fps - time.monotonic()))
            img = np.full((64, 64, 3), (n * 8) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = n
            if self._force:
                self._force = False
                frame.pict_type = av.video.frame.PictureType.I
            for pkt in codec.encode(frame):
                packet = MediaPacket(
                    "video", "h264", bytes(pkt), n * 3000, 90000, bool(pkt.is_keyframe),
                    time.monotonic(),
                )  # fmt: skip
                self.keyframes += packet.keyframe
                yield packet

    def request_keyframe(self, kind: str = "pli") -> None:
        self.requests[kind] += 1
        if kind in self.answers:
            self._force = True

    async def close(self) -> None:
        self.closed += 1


async def first_packet(sub: Subscriber, timeout: float = 5.0) -> MediaPacket:
    return await asyncio.wait_for(sub.get(), timeout)


async def test_late_joiner_asks_for_a_keyframe_instead_of_taking_a_stale_gop() -> None:
    session = OnRequestSession()
    stream = make_stream(Connector(session), keyframe_interval=0.3)
    with stream.subscribe("early") as early:
        await collect(early, 20)  # 0.7 s in: the only GOP is older than keyframe_interval
        assert session.keyframes == 1
        asked = time.monotonic()
        with stream.subscribe("late") as late:
            assert late.get_nowait() is None  # no burst of stale video
            got = await first_packet(late)
            waited = time.monotonic() - asked
        assert got.keyframe
        assert got.arrival >= asked
        assert session.requests["pli"] == 1
        assert session.keyframes == 2
        assert waited < 5.0
        assert stream.stats()["keyframe_requests"]["answered"] == 1
    await stream.stop()


async def test_many_joiners_at_once_cost_one_request() -> None:
    session = OnRequestSession()
    stream = make_stream(Connector(session), keyframe_interval=0.2)
    with stream.subscribe("first") as first:
        await collect(first, 15)
        subs = [stream.subscribe(f"viewer-{i}") for i in range(20)]
        for sub in subs:
            assert (await first_packet(sub)).keyframe
            sub.close()
    assert session.requests["pli"] == 1
    assert stream.stats()["keyframe_requests"]["coalesced"] == 19
    await stream.stop()


async def test_fir_follows_an_ignored_pli() -> None:
    session = OnRequestSession(answers=("fir",))
    stream = make_stream(Connector(session), keyframe_interval=0.2)
    with stream.subscribe("first") as first:
        await collect(first, 15)
        with stream.subscribe("late") as late:
            assert (await first_packet(late)).keyframe
    assert session.requests == {"pli": 1, "fir": 1}
    await stream.stop()


async def test_a_sender_that_never_answers_is_reported_then_reconnected() -> None:
    deaf = OnRequestSession(answers=())
    fresh = OnRequestSession()
    connector = Connector(deaf, fresh)
    stream = make_stream(connector, keyframe_interval=0.2, media_timeout=1.5)
    stream.keyframes.unanswered_after = 0.6
    with stream.subscribe("first") as first:
        await collect(first, 15)
        with stream.subscribe("late") as late:
            for _ in range(100):
                if stream.stats()["keyframes"] == "not answered":
                    break
                await asyncio.sleep(0.02)
            assert stream.stats()["keyframes"] == "not answered"
            assert deaf.requests["fir"] >= 1
            # The first viewer, which has a picture, keeps getting frames meanwhile.
            assert len(await collect(first, 5)) == 5
            got = await first_packet(late, timeout=10)  # from the reconnected session
            assert got.keyframe
            assert got.discontinuity
    assert deaf.closed == 1
    assert stream.stats()["keyframes"] == "ok"
    await stream.stop()


async def test_keyframes_are_asked_for_only_while_preroll_is_wanted() -> None:
    session = OnRequestSession()
    stream = make_stream(Connector(session), keyframe_interval=0.25)
    with stream.subscribe("viewer") as sub:
        await collect(sub, 30)  # 1 s of watching: nobody needs pre-roll
        assert session.keyframes == 1
        stream.keep_warm(5.0)
        await collect(sub, 30)  # 1 s warm: about four keyframes asked for
        assert session.requests["pli"] >= 2
        assert session.keyframes >= 3
        pre = stream.preroll(0.6)
        assert pre[0].keyframe
        assert time.monotonic() - pre[0].arrival < 0.6 + 0.25 + 0.3
    await stream.stop()


async def test_skipping_subscriber_asks_for_the_keyframe_it_waits_for() -> None:
    session = OnRequestSession()
    stream = make_stream(Connector(session))
    with stream.subscribe("fast") as fast, stream.subscribe("slow", max_packets=5) as slow:
        await collect(fast, 20)  # slow reads nothing: its queue overflows and it skips
        assert slow.waiting_for_keyframe
        assert session.requests["pli"] == 0  # a consumer stuck for good costs no keyframes
        got = await first_packet(slow)  # reading again asks for one
        assert got.keyframe
        assert session.requests["pli"] == 1
    await stream.stop()


def test_ring_is_bounded_with_one_endless_gop() -> None:
    ring = GopRing(seconds=1.0, max_bytes=1 << 20)
    base = time.monotonic()
    keyframe, delta = encode(2, gop=1000)
    ring.add(dataclasses.replace(keyframe, arrival=base))
    for i in range(1, 300):  # 20 s at 15 fps and no second keyframe
        ring.add(dataclasses.replace(delta, arrival=base + i / 15))
        assert ring.nbytes <= 1 << 20
        assert base + i / 15 - min((p.arrival for p in ring), default=base + i / 15) <= 1.0
    assert list(ring) == []  # the GOP outgrew the window: dropped whole, never cut
    ring.add(dataclasses.replace(keyframe, arrival=base + 21))
    assert ring.last_gop[0].keyframe


def test_ring_byte_cap_drops_whole_gops() -> None:
    packets = encode(60, gop=10)
    size = sum(len(p.data) for p in packets[:10])
    ring = GopRing(seconds=100.0, max_bytes=size * 2)
    for p in packets:
        ring.add(p)
        assert ring.nbytes <= size * 2 + len(p.data)
    kept = list(ring)
    assert kept[0].keyframe
    assert decode_all(kept) == len(kept)


async def test_waiting_for_a_first_picture_does_not_ask_for_periodic_keyframes() -> None:
    session = OnRequestSession()
    stream = make_stream(Connector(session), keyframe_interval=0.2)
    assert await stream.wait_keyframe(5.0)  # as an RTSP DESCRIBE or a WHEP offer does
    await asyncio.sleep(1.0)
    assert session.requests == {"pli": 0, "fir": 0}
    assert session.keyframes == 1
    await stream.stop()


async def test_a_stream_recorded_with_preroll_keeps_keyframes_coming_while_live() -> None:
    session = OnRequestSession()
    stream = make_stream(Connector(session), keyframe_interval=0.25)
    stream.wants_preroll = True  # as the bridge sets it for a doorbell whose presses are recorded
    with stream.subscribe("viewer") as sub:
        await collect(sub, 40)  # 1.3 s
    assert session.requests["pli"] >= 3
    assert session.keyframes >= 4
    await stream.stop()
