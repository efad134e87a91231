"""The simulated doorbell: its pictures, stamps and snapshots, and its peer as a plain viewer sees it."""

from __future__ import annotations

import asyncio
import io
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from bridge.media import aiortc_patch
from bridge.media.webrtc_source import WebRtcSource
from bridge.sim.doorbell import SimDoorbellPeer, SimMediaSettings, resolution_for
from bridge.sim.picture import read_stamp, render_frame, snapshot_jpeg


@pytest.fixture(autouse=True)
def _loopback_only() -> None:
    # Process-wide and deliberately never undone: no test may gather a non-loopback address.
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])


# -- pictures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", [0, 1, 3])
def test_stamp_survives_h264_at_a_starved_bitrate(quality: int) -> None:
    width, height, _bitrate = resolution_for(quality)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 15)
    encoder.bit_rate = 150_000
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    decoder = av.CodecContext.create("h264", "r")
    base_ms = 1_780_000_000_123
    read = []
    for n in range(6):
        frame = av.VideoFrame.from_ndarray(
            render_frame(width, height, n, base_ms + n * 66, "TEST"), format="yuv420p"
        )
        frame.pts = n
        for packet in encoder.encode(frame):
            for picture in decoder.decode(packet):
                read.append(read_stamp(picture.to_ndarray(format="gray")))
                # Every layout a consumer may have at hand reads the same.
                assert read_stamp(picture.to_ndarray()) == read[-1]
                assert read_stamp(picture.to_ndarray(format="rgb24")) == read[-1]
    assert read == [(n, base_ms + n * 66) for n in range(6)]


def test_read_stamp_rejects_a_picture_without_one() -> None:
    with pytest.raises(ValueError, match="CRC"):
        read_stamp(np.full((480, 640), 128, dtype=np.uint8))


def test_render_frame_layout() -> None:
    picture = render_frame(854, 480, 42, 1_780_000_000_000)
    assert picture.shape == (720, 854)
    assert picture.dtype == np.uint8
    assert read_stamp(picture) == (42, 1_780_000_000_000)


def test_snapshot_is_a_real_jpeg() -> None:
    data = snapshot_jpeg(640, 360, "Front door")
    assert data[:2] == b"\xff\xd8"
    assert data[-2:] == b"\xff\xd9"
    with av.open(io.BytesIO(data), mode="r", format="mjpeg") as container:
        picture = next(container.decode(video=0))
    assert (picture.width, picture.height) == (640, 360)
    _frame_no, taken_ms = read_stamp(picture.to_ndarray(format="gray"))
    assert abs(taken_ms - time.time() * 1000) < 60_000


def test_resolution_for_image_quality() -> None:
    assert resolution_for(0)[:2] == (854, 480)
    assert resolution_for(2)[:2] == (1280, 720)
    assert resolution_for(3)[:2] == (1920, 1080)
    with pytest.raises(ValueError, match="image_quality"):
        resolution_for(4)


# -- the peer -----------------------------------------------------------------------------------


async def test_plain_aiortc_viewer_still_decodes() -> None:
    """The passthrough patch is per receiver: an unmarked peer gets decoded frames as usual."""
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer.addTransceiver("video", direction="recvonly")
    viewer.addTransceiver("audio", direction="recvonly")
    doorbell = SimDoorbellPeer(SimMediaSettings(image_quality=0, profile="high"))
    try:
        await viewer.setLocalDescription(await viewer.createOffer())
        answer = await doorbell.handle_offer(viewer.localDescription.sdp)
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        video = next(r.track for r in viewer.getReceivers() if r.track.kind == "video")
        audio = next(r.track for r in viewer.getReceivers() if r.track.kind == "audio")
        frame = await asyncio.wait_for(video.recv(), 20)
        sound = await asyncio.wait_for(audio.recv(), 20)
    finally:
        await viewer.close()
        await doorbell.close()
    assert isinstance(frame, av.VideoFrame)
    assert (frame.width, frame.height) == (854, 480)
    assert read_stamp(frame.to_ndarray(format="gray"))[0] >= 0
    assert isinstance(sound, av.AudioFrame)


async def test_trickle_answer_has_no_candidates_and_sends_them_later() -> None:
    source = WebRtcSource([])
    trickled: list[tuple[str, str | None, int | None]] = []

    both_sent = asyncio.Event()

    async def on_candidate(candidate: str, mid: str | None, index: int | None) -> None:
        trickled.append((candidate, mid, index))
        await source.add_remote_candidate(candidate, mid, index)
        if len(trickled) == 2:
            both_sent.set()

    doorbell = SimDoorbellPeer(
        SimMediaSettings(image_quality=0, trickle=True), on_candidate=on_candidate
    )
    try:
        answer = await doorbell.handle_offer(await source.create_offer())
        assert "a=candidate" not in answer
        await source.set_answer(answer)
        await source.wait_connected(10)
        # The viewer may already be connected through a peer-reflexive candidate (the
        # doorbell checks the offer's candidates); the trickled ones still arrive.
        await asyncio.wait_for(both_sent.wait(), 10)
    finally:
        await source.close()
        await doorbell.close()
    assert trickled
    assert all(c.startswith("candidate:") and " 127.0.0.1 " in c for c, _m, _i in trickled)
    assert {index for _c, _m, index in trickled} == {0, 1}


async def test_cut_after_stops_media_abruptly() -> None:
    source = WebRtcSource([])
    doorbell = SimDoorbellPeer(SimMediaSettings(image_quality=0, fps=15, cut_after=0.5))
    received: list[float] = []
    try:
        await source.set_answer(await doorbell.handle_offer(await source.create_offer()))

        async def consume() -> None:
            async for packet in source.packets():
                if packet.kind == "video":
                    received.append(packet.arrival)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(2.0)
        count_at_2s = len(received)
        await asyncio.sleep(0.5)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert source.connection_state == "connected"  # the peer is up; only media died
    finally:
        await source.close()
        await doorbell.close()
    assert 0 < count_at_2s <= 12  # about 0.5 s of 15 fps, nothing after the cut
    assert len(received) == count_at_2s


async def test_close_is_idempotent_and_stops_tracks() -> None:
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    viewer.addTransceiver("video", direction="recvonly")
    doorbell = SimDoorbellPeer(SimMediaSettings(image_quality=0, audio_codec=None))
    await viewer.setLocalDescription(await viewer.createOffer())
    answer = await doorbell.handle_offer(viewer.localDescription.sdp)
    await viewer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    track = viewer.getReceivers()[0].track
    await asyncio.wait_for(track.recv(), 20)
    await doorbell.close()
    await doorbell.close()
    assert doorbell.connection_state == "closed"

    async def drain() -> None:
        while True:  # frames already in flight may still come; then the track ends
            await asyncio.wait_for(track.recv(), 10)

    with pytest.raises(MediaStreamError):
        await drain()
    await viewer.close()
