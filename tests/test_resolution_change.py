"""Every output follows a mid-stream resolution change (a new SPS/PPS before an IDR), through a
real hub stream fed with real H.264 that switches 320x240 → 160x128 → 320x240 (see
``resolution_util``). Real clients judge: ffmpeg, PyAV, aiohttp, aiortc."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import av
import pytest
from aiohttp.test_utils import TestClient

from bridge.media import aiortc_patch
from bridge.media.hub import Hub, Stream
from bridge.media.packet import NAL_IDR, NAL_PPS, NAL_SPS, extract_sps_pps, iter_nal_units
from bridge.media.sps import parse_sps
from bridge.routes import webrtc as webrtc_routes
from bridge.rtsp import RtspServer
from bridge.rtsp.feed import StreamFeed

from .app_util import make_app
from .fake_doorbell import run
from .resolution_util import (
    BIG,
    SMALL,
    ChangingConnector,
    changing_stream,
    changing_video,
    sizes_of,
)
from .test_mjpeg import RigFactory as MjpegRigFactory
from .test_mjpeg import jpeg_size, read_parts, snapshot
from .test_mjpeg import make_rig as make_rig  # the MJPEG rig fixture
from .test_rtsp import RawClient, depacketize, setup_and_play
from .test_webrtc_out import Browser
from .test_webrtc_out import Rig as WebRtcRig

BOTH = {BIG, SMALL}
# What FFmpeg's H.264 decoder says when it meets a slice it cannot decode (missing or wrong
# parameter sets, a broken reference): none of it may appear.
_DECODE_ERRORS = re.compile(
    r"non-existing (PPS|SPS)|decode_slice_header error|no frame!|error while decoding|"
    r"Invalid data|concealing",
    re.IGNORECASE,
)


async def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll a condition the code under test reaches asynchronously."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - the state belongs to the code under test
            await asyncio.sleep(0.02)


def stream_size(stream: Stream) -> tuple[int, int] | None:
    """The picture size of the stream's latest SPS."""
    if stream.sps is None:
        return None
    info = parse_sps(stream.sps)
    return info.width, info.height


@pytest.fixture
async def rtsp() -> AsyncIterator[tuple[RtspServer, Hub, Stream]]:
    hub, stream = changing_stream(ChangingConnector(sparse=True))
    server = RtspServer(hub.get, host="127.0.0.1", port=0)
    await server.start()
    yield server, hub, stream
    await server.close()
    await hub.close()


def _url(server: RtspServer) -> str:
    return f"rtsp://127.0.0.1:{server.port}/front-door"


# -- RTSP --------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_rtsp_ffmpeg_decodes_both_sizes(rtsp: tuple[RtspServer, Hub, Stream]) -> None:
    server, _, _ = rtsp
    # showinfo logs every decoded picture's size; the filter graph is rebuilt at each change.
    code, _, err = await run(
        "ffmpeg", "-hide_banner", "-v", "info", "-rtsp_transport", "tcp", "-i", _url(server),
        "-an", "-vf", "showinfo", "-t", "4", "-f", "null", "-",
        timeout=60,
    )  # fmt: skip
    assert code == 0, err
    sizes = [(int(w), int(h)) for w, h in re.findall(r" s:(\d+)x(\d+) ", err)]
    assert set(sizes) == BOTH, sizes
    assert len(sizes) >= 50, "4 s at 15 fps, give or take the start"
    changes = sum(a != b for a, b in itertools.pairwise(sizes))
    assert changes >= 2, sizes
    assert not _DECODE_ERRORS.search(err), err


def _sprop(sdp: str) -> tuple[bytes, bytes]:
    found = re.search(r"sprop-parameter-sets=([^;\r\n]+)", sdp)
    assert found, sdp
    sps, pps = (base64.b64decode(p) for p in found.group(1).split(","))
    return sps, pps


async def test_rtsp_describe_after_a_change_has_the_new_parameter_sets(
    rtsp: tuple[RtspServer, Hub, Stream],
) -> None:
    server, _, stream = rtsp
    client = await RawClient.connect(server.port)
    try:
        for size in (BIG, SMALL, BIG):
            stream.keep_warm(10)
            await wait_for(lambda size=size: stream_size(stream) == size)  # type: ignore[misc]
            reply = await client.request("DESCRIBE", _url(server), Accept="application/sdp")
            assert reply.status == 200, reply
            sdp = reply.body.decode()
            sps, pps = _sprop(sdp)
            info = parse_sps(sps)
            assert (info.width, info.height) == size
            assert f"a=framesize:96 {size[0]}-{size[1]}" in sdp
            assert (sps, pps) == (stream.sps, stream.pps)
    finally:
        await client.close()


def _access_units(frames: list[tuple[int, bytes]]) -> list[list[bytes]]:
    units: list[list[bytes]] = [[]]
    for channel, packet in frames:
        if channel != 0:
            continue
        units[-1].append(packet[12:])
        if packet[1] & 0x80:  # the marker bit ends an access unit
            units.append([])
    units.pop()
    return [depacketize(u) for u in units]


def _decode_alone(nals: list[bytes]) -> list[tuple[int, int]]:
    codec = av.CodecContext.create("h264", "r")
    data = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
    frames = [*codec.decode(av.Packet(data)), *codec.decode(None)]
    return [(f.width, f.height) for f in frames]


async def test_rtsp_every_idr_carries_its_own_parameter_sets(
    rtsp: tuple[RtspServer, Hub, Stream],
) -> None:
    server, _, _ = rtsp
    client = await RawClient.connect(server.port)
    await setup_and_play(client, _url(server))
    await client.read_frames(4.0)
    await client.close()
    idrs = [u for u in _access_units(client.frames) if any(n[0] & 0x1F == NAL_IDR for n in u)]
    # The doorbell sends parameter sets only with the first IDR of each size; every IDR must
    # still go out with the ones that apply to it, so a fresh decoder decodes it on its own.
    seen = set()
    for nals in idrs:
        types = [n[0] & 0x1F for n in nals]
        assert types[:2] == [NAL_SPS, NAL_PPS], types
        sizes = _decode_alone(nals)
        assert len(sizes) == 1, sizes
        assert sizes[0] in BOTH
        seen.add(sizes[0])
    assert len(idrs) >= 6, "two IDRs a second"
    assert seen == BOTH


def test_rtsp_a_client_behind_a_change_gets_the_sets_of_its_own_idrs() -> None:
    # A client still sending the 320x240 section while the hub has already seen the 160x128
    # IDR: the stream's latest parameter sets are not the ones its IDRs need.
    _, stream = changing_stream(ChangingConnector())
    video = changing_video(sparse=True)
    third = len(video) // 3
    assert sizes_of(video[third : third + 1]) == [SMALL]
    stream.sps, stream.pps = extract_sps_pps(video[third].data)
    feed = StreamFeed(stream)
    big = video[:third]
    idrs = [depacketize(feed.video_payloads(p)) for p in big if p.keyframe]
    assert len(idrs) == 2
    assert [_decode_alone(nals) for nals in idrs] == [[BIG], [BIG]]


# -- MJPEG and snapshots -------------------------------------------------------------------------


@pytest.mark.slow
async def test_mjpeg_and_snapshots_follow_the_new_size(
    make_rig: MjpegRigFactory,
) -> None:
    rig = await make_rig(ChangingConnector(sparse=True), fps=15, snapshot_max_age=0.1)
    # A 200-pixel cap: 320x240 scales to 200x150 (same aspect); 160x128 fits and is never
    # scaled up.
    expected = {BIG: (200, 150), SMALL: SMALL}
    async with rig.http.get(rig.url("/api/stream.mjpeg", width=200)) as resp:
        assert resp.status == 200
        parts = await read_parts(resp, 50)  # over 3 s: at least two changes
        encoders = rig.stats()["encoders"]
    sizes = [jpeg_size(p) for p in parts]
    assert set(sizes) == set(expected.values()), sizes
    assert sum(a != b for a, b in itertools.pairwise(sizes)) >= 2
    assert encoders == 1, "the encoder of the old size is dropped"
    # Snapshots (each from the next keyframe): one at each size, as the stream goes through them.
    got = set()
    for want in (SMALL, BIG):
        await wait_for(lambda want=want: stream_size(rig.stream) == want)  # type: ignore[misc]
        source, size = await snapshot(rig, width=200)
        assert source == "live"
        got.add(size)
    assert got == set(expected.values())
    await wait_for(lambda: not rig.stream.subscribers)


# -- WebRTC out ------------------------------------------------------------------------------------


@pytest.fixture
async def webrtc_rig(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> AsyncIterator[WebRtcRig]:
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])  # WebRTC stays on loopback
    connector = ChangingConnector(sparse=True)
    hub, stream = changing_stream(connector)
    app = make_app(hub, webrtc_routes.setup)
    rig = WebRtcRig(await aiohttp_client(app), hub, stream, connector)  # type: ignore[arg-type]
    yield rig
    for browser in rig.browsers:
        await browser.close()
    await app[webrtc_routes.WEBRTC].close()
    await hub.close()
    aiortc_patch.restrict_host_candidates(None)


@pytest.mark.slow
async def test_webrtc_viewers_decode_both_sizes(webrtc_rig: WebRtcRig) -> None:
    rig = webrtc_rig
    decoding, passthrough = Browser(), Browser(passthrough=True)
    await rig.whep(decoding)
    await rig.whep(passthrough)
    await decoding.wait_video(55)  # over 3.5 s: at least two changes
    await passthrough.wait_video(55)
    sizes = [(f.width, f.height) for _, f in decoding.video]
    assert set(sizes) == BOTH
    assert sum(a != b for a, b in itertools.pairwise(sizes)) >= 2
    # What went on the wire: every IDR carries the parameter sets it needs, so a decoder that
    # starts at any of them (a browser after a PLI, say) decodes it on its own.
    keys = [p for _, p in passthrough.video if p.keyframe]
    alone = [_decode_alone(list(iter_nal_units(p.data))) for p in keys]
    assert all(len(s) == 1 for s in alone), alone
    assert {s[0] for s in alone} == BOTH
    assert set(sizes_of([p for _, p in passthrough.video])) == BOTH
