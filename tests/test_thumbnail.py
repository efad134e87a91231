"""Clip thumbnails decode and encode on the calling thread: no FFmpeg worker threads.

Threads that FFmpeg started for one picture each took a glibc malloc arena, and what they had
allocated stayed behind as free memory the process never gave back (about 1 MB of RSS a clip).
While a codec context is open its workers are alive, so counting the process's threads then
shows whether any were started, without measuring memory or time.
"""

from __future__ import annotations

import os
from pathlib import Path

import av

from bridge.record.thumbnail import codec_context, jpeg_from_frame, thumbnail_from_keyframe
from bridge.sim.media_settings import SimMediaSettings
from bridge.sim.tracks import H264Encoder


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _keyframe() -> bytes:
    encoder = H264Encoder(SimMediaSettings(), (1280, 720))
    packets = encoder.encode(0, 0, keyframe=True)
    assert packets
    assert packets[0].is_keyframe
    return b"".join(bytes(p) for p in packets)


def test_the_keyframe_decoder_starts_no_threads() -> None:
    key = _keyframe()
    before = _threads()
    decoder = codec_context("h264", "r")
    frames = list(decoder.decode(av.Packet(key))) + list(decoder.decode(None))
    assert frames
    assert frames[0].width == 1280
    assert _threads() == before  # the context is still open: its workers would be alive now
    jpeg = jpeg_from_frame(frames[0])
    assert jpeg.startswith(b"\xff\xd8")


def test_the_jpeg_encoder_starts_no_threads() -> None:
    decoder = codec_context("h264", "r")
    frame = next(iter(list(decoder.decode(av.Packet(_keyframe()))) + list(decoder.decode(None))))
    before = _threads()
    encoder = codec_context("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 640, 360, "yuvj420p"
    encoder.time_base = frame.time_base or 1
    picture = frame.reformat(width=640, height=360, format="yuvj420p", threads=1)
    picture.pts = 0
    assert list(encoder.encode(picture))
    assert _threads() == before


def test_jpeg_from_frame_starts_no_threads() -> None:
    decoder = codec_context("h264", "r")
    frame = next(iter(list(decoder.decode(av.Packet(_keyframe()))) + list(decoder.decode(None))))
    before = _threads()
    jpeg_from_frame(frame)  # its scaler lives as long as the frame it returned: still alive here
    assert _threads() == before


def test_a_thumbnail_is_still_written(tmp_path: Path) -> None:
    out = tmp_path / "clip.jpg"
    assert thumbnail_from_keyframe(_keyframe(), out)
    data = out.read_bytes()
    assert data.startswith(b"\xff\xd8")
    assert data.endswith(b"\xff\xd9")
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.width == 640
