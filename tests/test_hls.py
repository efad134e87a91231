"""HLS / LL-HLS against real clients on 127.0.0.1: ffprobe, ffmpeg, PyAV and hand-made requests."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from bridge.hls import BadRequest, HlsOptions, Segmenter
from bridge.hls.playlist import Uris, check_blocking, media_playlist, reached
from bridge.media.hub import Hub, Stream
from bridge.routes import hls

from .app_util import make_app
from .fake_doorbell import FPS, HEIGHT, WIDTH, Connector, make_stream, noisy_video, probe, run
from .h264util import encode
from .hls_util import Playlist, attributes, parse_media, timed_packets

FAST = {"segment_target": 1.0, "part_target": 0.25}  # the fake doorbell's GOP is 1 s


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["Content-Type"].startswith("application/json")
        return json.loads(self.body)


@dataclass
class Rig:
    server: TestServer
    app: web.Application
    hub: Hub
    stream: Stream
    connector: Connector
    http: aiohttp.ClientSession

    def url(self, path: str, src: str | None = "front-door", **query: Any) -> str:
        params = {k: str(v) for k, v in query.items()}
        if src is not None:
            params = {"src": src, **params}
        return str(self.server.make_url(path).with_query(params))

    async def get(self, url: str, timeout: float = 20.0) -> Reply:
        async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return Reply(resp.status, dict(resp.headers), await resp.read())

    async def playlist(self, **query: Any) -> tuple[str, Playlist]:
        url = self.url("/api/hls/live.m3u8", **query)
        reply = await self.get(url)
        assert reply.status == 200, reply.body
        assert reply.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        assert reply.headers["Cache-Control"] == "no-cache"
        return url, parse_media(reply.body.decode())

    async def media(self, base: str, uri: str) -> bytes:
        reply = await self.get(str(URL(base).join(URL(uri))))
        assert reply.status == 200, reply.body
        assert reply.headers["Cache-Control"].startswith("public, max-age=")
        return reply.body


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(
    aiohttp_server: Callable[..., Awaitable[TestServer]], session: aiohttp.ClientSession
) -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    async def factory(connector: Connector | None = None, **options: Any) -> Rig:
        connector = connector or Connector()
        hub, stream = make_stream(connector)
        app = make_app(hub, lambda app: hls.setup(app, HlsOptions(**options)))
        server = await aiohttp_server(app)
        made.append(Rig(server, app, hub, stream, connector, session))
        return made[-1]

    yield factory
    for rig in made:
        await rig.server.close()  # runs the app's cleanup: every packager stops
        assert not rig.stream.subscribers
        await rig.hub.close()


def decode(data: bytes) -> tuple[list[tuple[int, int]], int]:
    """(width, height) of every decoded video frame, and the number of audio frames."""
    sizes: list[tuple[int, int]] = []
    audio = 0
    with av.open(io.BytesIO(data), "r") as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                sizes.append((frame.width, frame.height))
            else:
                audio += 1
    return sizes, audio


# -- real players ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_ffprobe_and_ffmpeg_copy(make_rig: RigFactory, tmp_path: Path) -> None:
    rig = await make_rig()  # default 2 s segments
    info = await probe(rig.url("/api/stream.m3u8"))
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (WIDTH, HEIGHT)
    assert streams["audio"]["codec_name"] == "aac"

    out = tmp_path / "copy.mp4"
    url = rig.url("/api/stream.m3u8", ll=0)  # the plain playlist this time
    code, _, err = await run(
        "ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", "-t", "3", str(out), timeout=60
    )
    assert code == 0, err
    copied = await probe(str(out), "-count_packets")
    streams = {s["codec_type"]: s for s in copied["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert streams["audio"]["codec_name"] == "aac"
    frames, seconds = int(streams["video"]["nb_read_packets"]), float(streams["video"]["duration"])
    assert 2.5 <= seconds <= 3.5
    assert abs(frames - FPS * seconds) <= 2, (frames, seconds)


# -- LL-HLS by hand --------------------------------------------------------------------------------


async def test_ll_hls_parts_blocking_reload_and_decode(make_rig: RigFactory) -> None:
    rig = await make_rig(**FAST)
    url, pl = await rig.playlist()
    control = attributes(pl.tags["EXT-X-SERVER-CONTROL"])
    assert control["CAN-BLOCK-RELOAD"] == "YES"
    part_target = float(attributes(pl.tags["EXT-X-PART-INF"])["PART-TARGET"])
    assert 0.2 <= part_target <= 0.33
    assert float(control["PART-HOLD-BACK"]) >= 2 * part_target
    assert pl.segments, "a playlist is only served once a segment is complete"
    assert pl.parts
    assert pl.preload_hint
    assert all(p.duration <= part_target for p in pl.parts)
    for msn in {p.msn for p in pl.parts}:
        assert next(p for p in pl.parts if p.msn == msn).independent, (
            "a segment opens on a keyframe"
        )
    assert all(s.date is not None for s in pl.segments)

    # A complete segment is exactly its parts; init + parts decode to real pictures.
    seg = next(s for s in pl.segments if any(p.msn == s.msn for p in pl.parts))
    parts = [await rig.media(url, p.uri) for p in pl.parts if p.msn == seg.msn]
    init = await rig.media(url, seg.map_uri)
    assert b"avcC" in init
    assert b"esds" in init
    assert await rig.media(url, seg.uri) == b"".join(parts)
    sizes, audio = await asyncio.to_thread(decode, init + b"".join(parts))
    assert sizes
    assert set(sizes) == {(WIDTH, HEIGHT)}
    assert len(sizes) == round(seg.duration * FPS)
    assert audio > 0

    # Blocking reload: ask for the hinted part, which does not exist yet.
    hint = re.search(r"part-(\d+)\.(\d+)\.m4s", pl.preload_hint)
    assert hint is not None
    msn, index = int(hint[1]), int(hint[2])
    assert all(p.uri != pl.preload_hint for p in pl.parts)
    _, later = await rig.playlist(_HLS_msn=msn, _HLS_part=index)
    listed = [p for p in later.parts if (p.msn, p.uri) == (msn, pl.preload_hint)]
    new_segment = any(s.msn == msn for s in later.segments) or later.parts[-1].msn > msn
    assert listed or new_segment, later.text  # that part, or the segment ended before it
    # The part a new hint names is served as soon as it exists (a blocking GET).
    assert later.preload_hint is not None
    assert len(await rig.media(url, later.preload_hint)) > 0

    # Requests the spec says to refuse.
    for query in ({"_HLS_msn": msn + 5}, {"_HLS_msn": msn, "_HLS_part": index + 10}):
        reply = await rig.get(rig.url("/api/hls/live.m3u8", **query))
        assert reply.status == 400
        assert "too far ahead" in reply.json()["error"]


async def test_video_only_stream(make_rig: RigFactory) -> None:
    rig = await make_rig(Connector(audio=False), **FAST)
    reply = await rig.get(rig.url("/api/stream.m3u8"))
    assert reply.status == 200
    variant = reply.body.decode()
    info = attributes(variant.splitlines()[3].partition(":")[2])
    assert re.fullmatch(r"avc1\.[0-9a-f]{6}", info["CODECS"])
    assert info["RESOLUTION"] == f"{WIDTH}x{HEIGHT}"
    assert int(info["BANDWIDTH"]) > 0
    media_url = str(URL(rig.url("/api/stream.m3u8")).join(URL(variant.splitlines()[4])))
    assert URL(media_url).path == "/api/hls/live.m3u8"
    assert URL(media_url).query["src"] == "front-door"
    pl = parse_media((await rig.get(media_url)).body.decode())
    init = await rig.media(media_url, pl.segments[0].map_uri)
    assert b"mp4a" not in init
    sizes, audio = await asyncio.to_thread(
        decode, init + await rig.media(media_url, pl.segments[0].uri)
    )
    assert sizes
    assert audio == 0


# -- sharing, window, idle -------------------------------------------------------------------------


@pytest.mark.slow
async def test_one_packager_shared_bounded_and_stopped_when_idle(make_rig: RigFactory) -> None:
    rig = await make_rig(idle_timeout=1.0, window=3, **FAST)
    first = await asyncio.gather(*(rig.playlist() for _ in range(4)))  # four viewers at once
    assert len({pl.segments[0].uri.split("/")[0] for _, pl in first}) == 1, "one session"
    assert len(rig.app[hls.HLS].packagers) == 1
    assert [s.name for s in rig.stream.subscribers] == ["hls"]
    url, start = first[0]
    old_segment = start.segments[0].uri

    # Viewers keep polling; the window slides and stays bounded. A segment that slid out stays
    # fetchable for window + 1 more segments (RFC 8216 6.2.2), then goes.
    retired_ok = False
    for _ in range(40):
        await asyncio.sleep(0.5)
        _, pl = await rig.playlist()
        assert len(pl.segments) <= 3
        assert len({p.msn for p in pl.parts}) <= 4
        slid = pl.media_sequence - start.media_sequence
        if 1 <= slid <= 3:
            kept = await rig.get(str(URL(url).join(URL(old_segment))))
            assert kept.status == 200, "a segment just out of the playlist is still served"
            retired_ok = True
        if slid >= 3 + 4 + 1:
            break
    assert retired_ok
    assert [s.name for s in rig.stream.subscribers] == ["hls"]
    gone = await rig.get(str(URL(url).join(URL(old_segment))))
    assert gone.status == 404
    assert "not available" in gone.json()["error"]

    # Nobody asks for anything: the packager stops and leaves the hub stream.
    for _ in range(50):
        if not rig.stream.subscribers:
            break
        await asyncio.sleep(0.1)
    assert not rig.stream.subscribers
    assert not rig.app[hls.HLS].packagers
    # Media URLs of the stopped session say so; a new playlist starts a new session.
    ended = await rig.get(str(URL(url).join(URL(pl.segments[-1].uri))))
    assert ended.status == 404
    assert "ended" in ended.json()["error"]
    _, again = await rig.playlist()
    assert again.segments[0].uri.split("/")[0] != old_segment.split("/")[0]


# -- errors ----------------------------------------------------------------------------------------


async def test_unknown_stream_and_missing_src(make_rig: RigFactory) -> None:
    rig = await make_rig()
    paths = [
        "/api/stream.m3u8",
        "/api/hls/live.m3u8",
        "/api/hls/0a1b2c3d/init-1.mp4",
        "/api/hls/0a1b2c3d/seg-0.m4s",
        "/api/hls/0a1b2c3d/part-0.0.m4s",
    ]
    for path in paths:
        missing = await rig.get(rig.url(path, src="back-door"))
        assert missing.status == 404, path
        assert missing.json() == {"error": "unknown stream 'back-door'", "streams": ["front-door"]}
        no_src = await rig.get(rig.url(path, src=None))
        assert no_src.status == 400, path
        assert "missing ?src" in no_src.json()["error"]
    for query in ({"_HLS_part": 1}, {"_HLS_msn": "x"}, {"_HLS_msn": -1}):
        reply = await rig.get(rig.url("/api/hls/live.m3u8", **query))
        assert reply.status == 400
        assert "_HLS_" in reply.json()["error"]
    assert rig.stream.state == "idle", "nothing was started"
    assert not rig.stream.subscribers


# -- reconnects ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_source_reconnect_keeps_the_playlist_going(
    make_rig: RigFactory, tmp_path: Path
) -> None:
    rig = await make_rig(Connector(durations=[2.0]), **FAST)
    seen: dict[int, str] = {}  # msn -> segment URI, across every reload
    last_sequence = -1
    for _ in range(40):
        _, pl = await rig.playlist()
        assert pl.media_sequence >= last_sequence
        last_sequence = pl.media_sequence
        for s in pl.segments:
            assert seen.setdefault(s.msn, s.uri) == s.uri, "a number was reused"
        if rig.stream.reconnects and any(s.discontinuity for s in pl.segments):
            break
        await asyncio.sleep(0.25)
    assert rig.stream.reconnects >= 1
    marked = [s for s in pl.segments if s.discontinuity]
    assert marked, pl.text
    assert marked[0].msn == pl.segments[pl.segments.index(marked[0]) - 1].msn + 1
    assert sorted(seen) == list(range(min(seen), max(seen) + 1)), "no gaps in numbering"

    out = tmp_path / "after.mp4"
    url = rig.url("/api/hls/live.m3u8", ll=0)
    code, _, err = await run(
        "ffmpeg", "-v", "error", "-y", "-i", url, "-c", "copy", "-t", "2", str(out), timeout=60
    )
    assert code == 0, err
    copied = await probe(str(out), "-count_packets")
    assert {s["codec_name"] for s in copied["streams"]} == {"h264", "aac"}


# -- the segmenter alone (no network) --------------------------------------------------------------


def test_segmenter_window_stays_bounded_over_a_minute() -> None:
    seg = Segmenter(window=6)
    sizes = []
    for n, packet in enumerate(timed_packets(60, noisy_video())):
        seg.feed(packet)
        if n % 500 == 0 and seg.segments:
            sizes.append(sum(len(s.data) for s in seg.segments))
    assert len(seg.segments) == 6
    assert seg.segments[0].msn == seg.next_msn - 7  # six complete, one being built
    # A segment that slid out stays fetchable for about the playlist's length more (RFC 8216
    # 6.2.2: a client may fetch it just after reading a playlist that listed it), then goes.
    first = seg.segments[0].msn
    assert all(seg.segment(msn) is not None for msn in range(first - 7, first))
    assert seg.segment(first - 8) is None
    assert seg.segment(seg.next_msn - 1) is None, "the one being built is not a segment yet"
    assert max(sizes) <= 2 * sizes[len(sizes) // 2], "memory does not grow with time"
    assert seg.target_duration == 2
    for s in seg.segments:
        assert s.duration == 2 * 90000
        assert s.parts[0].independent
        assert all(p.duration <= 0.3 * 90000 for p in s.parts)
    text = media_playlist(seg, Uris(), low_latency=False)
    assert "#EXT-X-PART" not in text
    assert "PRELOAD-HINT" not in text
    assert text.count("#EXTINF:2.00000,") == 6


def test_segmenter_long_gop_asks_for_keyframes() -> None:
    asked: list[int] = []
    seg = Segmenter(request_keyframe=lambda: asked.append(len(seg.segments)))
    for packet in timed_packets(20, encode(60, gop=60), audio=False):  # a 4 s GOP
        seg.feed(packet)
    assert asked, "a PLI for the doorbell when the segment runs long"
    assert {s.duration for s in seg.segments} == {4 * 90000}, "cut only at keyframes"
    assert seg.target_duration == 4, "TARGETDURATION covers the longest segment"
    assert seg.init is not None
    assert seg.init.audio is None


def test_segmenter_discontinuity_and_blocking_rules() -> None:
    seg = Segmenter(window=3)
    packets = timed_packets(8, noisy_video())
    # A reconnect 3.5 s in: the hub marks the new session's first packet, a keyframe.
    cut = next(i for i, p in enumerate(packets) if p.arrival >= 3.5 and p.kind == "video")
    video = noisy_video()
    packets[cut] = replace(packets[cut], data=video[0].data, keyframe=True, discontinuity=True)
    for packet in packets:
        seg.feed(packet)
    marked = [s for s in seg.segments if s.discontinuity]
    assert len(marked) == 1
    assert marked[0].start == packets[cut].pts
    assert "#EXT-X-DISCONTINUITY\n" in media_playlist(seg, Uris(), low_latency=True)
    for packet in timed_packets(16, noisy_video())[len(packets) :]:
        seg.feed(packet)
    assert seg.discontinuity_sequence == 1, "counted once it slid out of the window"

    building, next_index = seg.next_part
    assert not reached(seg, building, next_index)
    assert reached(seg, building - 1, None)
    assert not reached(seg, building, None)
    check_blocking(seg, building + 1, 0)
    with pytest.raises(BadRequest):
        check_blocking(seg, building + 2, None)
    with pytest.raises(BadRequest):
        check_blocking(seg, building, next_index + 3)


async def test_new_parameter_sets_bring_a_new_init_section(tmp_path: Path) -> None:
    seg = Segmenter()
    first = timed_packets(4, noisy_video())
    shift = 4 * 90000
    # After a reconnect the doorbell sends a different picture size (a 64x64 encoder here).
    second = [
        replace(p, pts=p.pts + (shift if p.kind == "video" else shift * 8000 // 90000))
        for p in timed_packets(4, encode(30, gop=15, size=64))
    ]
    for packet in first + second:
        seg.feed(packet)
    # Serve it as files, ended, and let ffmpeg's HLS demuxer read across the change.
    text = media_playlist(seg, Uris(), low_latency=False) + "#EXT-X-ENDLIST\n"
    assert text.count("#EXT-X-MAP:") == 2
    assert '#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI="init-2.mp4"' in text
    (tmp_path / "live.m3u8").write_text(text)
    for s in seg.segments:
        (tmp_path / f"seg-{s.msn}.m4s").write_bytes(s.data)
        (tmp_path / f"init-{s.init.version}.mp4").write_bytes(s.init.data)
    code, out, err = await run(
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "v",
        "-show_entries",
        "frame=width,height",
        "-of",
        "csv=p=0",
        str(tmp_path / "live.m3u8"),
    )
    assert code == 0, err
    sizes = [line.split(",")[:2] for line in out.split() if line]
    assert sizes[0] == [str(WIDTH), str(HEIGHT)]
    assert sizes[-1] == ["64", "64"]
    assert len(sizes) == 6 * FPS  # 4 s + 2 s (the last segment is still being built)
