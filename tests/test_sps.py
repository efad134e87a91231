"""The SPS parser (property tests with hypothesis), the parameter-set tracker, and outputs fed
SPSs that cannot be used: unreadable, or declaring a picture of zero width."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.hls import HlsOptions, Segmenter
from bridge.media.packet import MediaPacket, extract_sps_pps
from bridge.media.sps import MAX_SIDE, ParameterSetTracker, parse_sps
from bridge.rtsp import RtspServer

from .app_util import make_app
from .hls_util import timed_packets
from .resolution_util import BIG, SMALL, changing_video
from .test_rtsp import RawClient


class _BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(code.bit_length() * 2 - 1, code)

    def nal(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        body = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
        # Emulation prevention, so the RBSP survives in a NAL unit.
        out = bytearray()
        zeros = 0
        for b in body:
            if zeros >= 2 and b <= 3:
                out.append(3)
                zeros = 0
            out.append(b)
            zeros = zeros + 1 if b == 0 else 0
        return b"\x67" + bytes(out)


def make_sps(width_mbs: int, height_mbs: int, crop: tuple[int, int, int, int] | None) -> bytes:
    """A Baseline SPS of ``width_mbs`` x ``height_mbs`` macroblocks, cropped (in 2-pixel units)."""
    w = _BitWriter()
    w.u(8, 66)
    w.u(8, 0xC0)
    w.u(8, 30)
    w.ue(0)  # seq_parameter_set_id
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(0)  # pic_order_cnt_type
    w.ue(0)  # log2_max_pic_order_cnt_lsb_minus4
    w.ue(1)  # max_num_ref_frames
    w.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    w.ue(width_mbs - 1)
    w.ue(height_mbs - 1)
    w.u(1, 1)  # frame_mbs_only_flag
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, crop is not None)
    for value in crop or ():
        w.ue(value)
    w.u(1, 0)  # vui_parameters_present_flag
    return w.nal()


# A 160x128 SPS cropped to nothing: it parses, and declares a picture of width 0.
ZERO_WIDTH = make_sps(10, 8, (0, 80, 0, 0))
UNREADABLE = b"\x67\x42\xc0"  # cut off after the profile


# -- the parser -------------------------------------------------------------------------------


def test_real_x264_parameter_sets_parse() -> None:
    video = changing_video()
    for index, size in ((0, BIG), (len(video) // 3, SMALL)):
        sps, _ = extract_sps_pps(video[index].data)
        assert sps is not None
        info = parse_sps(sps)
        assert (info.width, info.height) == size
        assert info.profile_level_id == sps[1:4].hex()


def test_unusable_sps_are_value_errors() -> None:
    for nal in (b"", b"\x68\x00", UNREADABLE, ZERO_WIDTH, make_sps(10, 8, (0, 0, 64, 0))):
        with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the fault
            parse_sps(nal)


@settings(max_examples=300, deadline=None)
@given(
    width_mbs=st.integers(1, 1100),
    height_mbs=st.integers(1, 1100),
    crop=st.none() | st.tuples(*[st.integers(0, 600)] * 4),
)
def test_parsed_size_is_what_the_sps_declares(
    width_mbs: int, height_mbs: int, crop: tuple[int, int, int, int] | None
) -> None:
    left, right, top, bottom = crop or (0, 0, 0, 0)
    width = width_mbs * 16 - 2 * (left + right)
    height = height_mbs * 16 - 2 * (top + bottom)
    nal = make_sps(width_mbs, height_mbs, crop)
    if 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE:
        info = parse_sps(nal)
        assert (info.width, info.height) == (width, height)
    else:
        with pytest.raises(ValueError, match="impossible picture size"):
            parse_sps(nal)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_value_error(body: bytes) -> None:
    try:
        info = parse_sps(b"\x67" + body)
    except ValueError:
        return
    assert 0 < info.width <= MAX_SIDE
    assert 0 < info.height <= MAX_SIDE


def test_tracker_prefers_in_band_then_falls_back() -> None:
    video = changing_video()
    big, small = (extract_sps_pps(video[i].data) for i in (0, len(video) // 3))
    tracker = ParameterSetTracker(lambda: small)
    assert tracker.current == small  # nothing seen yet: the stream's latest
    assert tracker.update(video[0].data)  # differs from the fallback
    assert tracker.current == big
    assert not tracker.update(video[0].data)
    assert not tracker.update(b"\x00\x00\x00\x01\x65\x88")  # an IDR without parameter sets
    assert tracker.current == big


# -- outputs fed unusable SPSs --------------------------------------------------------------------


def _with_sps(packets: list[MediaPacket], sps: bytes) -> list[MediaPacket]:
    out = []
    for p in packets:
        if p.kind == "video" and p.keyframe:
            old, _ = extract_sps_pps(p.data)
            assert old is not None
            p = dataclasses.replace(p, data=p.data.replace(old, sps))
        out.append(p)
    return out


@pytest.mark.parametrize("bad", [UNREADABLE, ZERO_WIDTH], ids=["unreadable", "zero-width"])
def test_segmenter_pauses_on_a_bad_sps_and_resumes(bad: bytes) -> None:
    seg = Segmenter(segment_target=1.0, part_target=0.25)
    good = timed_packets(9, changing_video())
    third = len(good) // 3
    shifted = _with_sps(good[third : 2 * third], bad)
    for packet in good[:third]:
        seg.feed(packet)
    before = seg.next_msn
    assert seg.error is None
    for packet in shifted:
        seg.feed(packet)  # never raises
    assert seg.error is not None
    assert "cannot be packaged" in seg.error
    assert seg.next_msn <= before + 1, "nothing packaged under the bad SPS"
    for packet in good[2 * third :]:
        seg.feed(packet)
    assert seg.error is None
    assert seg.segments[-1].discontinuity or seg.current is not None


async def test_rtsp_and_hls_with_a_zero_width_sps_answer_clearly(
    aiohttp_server: object,
) -> None:
    from bridge.routes import hls

    from .resolution_util import ChangingConnector, ChangingSession, changing_stream

    class BadSession(ChangingSession):
        async def packets(self) -> AsyncIterator[MediaPacket]:  # type: ignore[override]
            async for packet in super().packets():
                yield _with_sps([packet], ZERO_WIDTH)[0] if packet.keyframe else packet

    class BadConnector(ChangingConnector):
        async def __call__(self) -> BadSession:  # type: ignore[override]
            session = BadSession(sparse=False)
            self.made.append(session)
            return session

    hub, stream = changing_stream(BadConnector())
    server = RtspServer(hub.get, host="127.0.0.1", port=0)
    await server.start()
    app = make_app(
        hub, lambda app: hls.setup(app, HlsOptions(segment_target=1.0, part_target=0.25))
    )
    http_server: TestServer = await aiohttp_server(app)  # type: ignore[operator]
    try:
        # RTSP passes the bitstream through: the track is described, just without its size.
        client = await RawClient.connect(server.port)
        reply = await client.request(
            "DESCRIBE", f"rtsp://127.0.0.1:{server.port}/front-door", Accept="application/sdp"
        )
        await client.close()
        assert reply.status == 200
        assert "sprop-parameter-sets=" in reply.body.decode()
        assert "framesize" not in reply.body.decode()
        # HLS cannot make an init section: a 503 that says why, not a 500.
        hls_registry = app[hls.HLS]
        hls_registry.startup_timeout = 2.0
        async with (
            aiohttp.ClientSession() as http,
            http.get(http_server.make_url("/api/stream.m3u8").with_query(src="front-door")) as r,
        ):
            body = await r.json()
        assert r.status == 503
        assert "impossible picture size" in body["error"], body
        assert stream.state == "live", "the stream keeps serving"
    finally:
        await server.close()
        await hub.close()
