"""Clip thumbnails: one keyframe decoded and encoded as JPEG (blocking: run in a thread).

Decoding a single IDR costs a few milliseconds even at 1080p; it must still stay off the event
loop, so callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import fractions
import logging
import os
from pathlib import Path
from typing import Any, Literal

import av

__all__ = ["codec_context", "jpeg_from_frame", "thumbnail_from_file", "thumbnail_from_keyframe"]

_LOGGER = logging.getLogger(__name__)
MAX_WIDTH = 640


def codec_context(name: str, mode: Literal["r", "w"]) -> Any:
    """A codec context that works on the calling thread only.

    PyAV asks FFmpeg for a worker thread per core by default: the h264 decoder started 2 and
    swscale 2 more on a 2-core machine, for one picture, and ended them when freed, so every
    clip created and joined threads. Each new thread takes a glibc malloc arena, and memory
    freed in those arenas is mostly kept, not given back (the soak's RSS growth is free heap:
    ``malloc_trim`` returns all of it). One picture is milliseconds of work; threads buy
    nothing here.
    """
    codec: Any = av.CodecContext.create(name, mode)
    codec.thread_count = 1
    return codec


def thumbnail_from_keyframe(annexb: bytes, out: Path, *, max_width: int = MAX_WIDTH) -> bool:
    """Decode one H.264 keyframe (Annex-B, with SPS/PPS) and save it as a JPEG."""
    codec = codec_context("h264", "r")
    try:
        frames = list(codec.decode(av.Packet(annexb)))
        frames += codec.decode(None)  # flush: a decoder may hold the picture until told
    except av.error.FFmpegError as err:
        _LOGGER.warning("thumbnail: keyframe would not decode: %s", err)
        return False
    if not frames:
        return False
    _write_atomic(out, jpeg_from_frame(frames[0], max_width=max_width))
    return True


def thumbnail_from_file(clip: Path, out: Path, *, max_width: int = MAX_WIDTH) -> bool:
    """Save the first decodable video frame of a clip file as a JPEG."""
    try:
        with av.open(str(clip)) as container:
            if not container.streams.video:
                return False
            video: Any = container.streams.video[0]
            video.codec_context.thread_count = 1  # as codec_context() does, for the same reason
            for frame in container.decode(video):
                _write_atomic(out, jpeg_from_frame(frame, max_width=max_width))
                return True
    except (av.error.FFmpegError, OSError) as err:
        _LOGGER.warning("thumbnail: %s would not decode: %s", clip.name, err)
    return False


def jpeg_from_frame(frame: av.VideoFrame, *, max_width: int = MAX_WIDTH) -> bytes:
    """Encode a decoded picture as a baseline JPEG no wider than ``max_width``."""
    width, height = frame.width, frame.height
    if width > max_width:
        # Keep the aspect ratio; JPEG 4:2:0 wants even sizes.
        height = max(2, round(height * max_width / width / 2) * 2)
        width = max_width
    encoder = codec_context("mjpeg", "w")
    encoder.width, encoder.height = width, height
    # The mjpeg encoder takes full-range 4:2:0; swscale converts from the video range.
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 1)
    encoder.options = {"qmin": "3", "qmax": "6"}  # quantizer bounds: a crisp, small picture
    # swscale would start worker threads too (PyAV's default is one per core): see codec_context.
    picture = frame.reformat(width=width, height=height, format="yuvj420p", threads=1)
    picture.pts = 0
    data = b"".join(bytes(p) for p in encoder.encode(picture))
    return data + b"".join(bytes(p) for p in encoder.encode(None))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
