"""PyAV building blocks of the lazy decoder: H.264 in, scaled JPEG out.

Everything here is synchronous and CPU-bound, meant to run in a worker thread. An object is
used by one thread at a time; PyAV codec contexts are not safe to share between threads at once.
"""

from __future__ import annotations

import fractions
import io
import logging

import av
import av.error
from av.video.reformatter import VideoReformatter

from bridge.media.packet import NAL_SPS, h264_nal_types
from bridge.mjpeg.options import fit_size

__all__ = ["H264Decoder", "JpegEncoder", "encode_jpeg", "fit_jpeg", "fit_size"]

_LOGGER = logging.getLogger(__name__)

_START = b"\x00\x00\x00\x01"


class H264Decoder:
    """Decodes Annex-B access units, skipping to a keyframe whenever the chain of references breaks."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("h264", "r")
        # Slice threading (PyAV's default) returns each picture at once; frame threading would
        # hold back one frame per thread, which is latency a live view does not want.
        self.synced = False
        self.decoded = 0

    def decode(
        self, data: bytes, pts: int, keyframe: bool, sps: bytes | None, pps: bytes | None
    ) -> list[av.VideoFrame]:
        """Decode one access unit; returns no pictures while waiting for a keyframe."""
        if not self.synced:
            if not keyframe:
                return []
            self.synced = True
        if keyframe and sps is not None and pps is not None and NAL_SPS not in h264_nal_types(data):
            # Many cameras send the parameter sets with the first IDR only, and a decoder that
            # joins later (or was reset) cannot decode a keyframe without them.
            data = _START + sps + _START + pps + data
        packet = av.Packet(data)
        packet.pts = pts
        try:
            frames = self._codec.decode(packet)
        except av.error.FFmpegError as err:
            _LOGGER.debug("h264 decode failed (%s); waiting for a keyframe", err)
            self.synced = False
            return []
        self.decoded += len(frames)
        return frames

    def skip(self) -> None:
        """A packet was left out on purpose: later P-frames lack a reference until a keyframe."""
        self.synced = False


class JpegEncoder:
    """One MJPEG encoder for one output size, reused for every frame of that size."""

    def __init__(self, width: int, height: int, quality: int) -> None:
        self.size = (width, height)
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height = width, height
        # JPEG wants full-range YUV; "yuvj420p" is how FFmpeg's encoder is told so.
        codec.pix_fmt = "yuvj420p"
        codec.time_base = fractions.Fraction(1, 90000)
        # Pinning qmin = qmax is a constant quantizer, like ffmpeg's -q:v (2 best .. 31 worst).
        # PyAV cannot set a frame's quality, which the qscale flag would need.
        codec.qmin = codec.qmax = quality
        self._codec = codec
        # One scaler for the stream. ``frame.reformat`` builds a fresh swscale context for every
        # frame, and PyAV's default asks it for a thread per core: threads started and joined
        # for each picture, each taking a glibc arena (the soak's heap growth, issue 13).
        self._scaler = VideoReformatter()
        self.encoded = 0

    def encode(self, frame: av.VideoFrame) -> bytes:
        """Scale ``frame`` to this encoder's size and return one JPEG image."""
        width, height = self.size
        scaled = self._scaler.reformat(frame, width, height, "yuvj420p", threads=1)
        scaled.pts = None
        jpeg = b"".join(bytes(p) for p in self._codec.encode(scaled))
        self.encoded += 1
        return jpeg


def encode_jpeg(frame: av.VideoFrame, size: tuple[int, int], quality: int) -> bytes:
    """One-off JPEG of ``frame`` at ``size`` (snapshots; cheap enough to make an encoder each)."""
    return JpegEncoder(size[0], size[1], quality).encode(frame)


def fit_jpeg(jpeg: bytes, max_width: int | None, max_height: int | None, quality: int) -> bytes:
    """A JPEG scaled down to fit the bounds, or the same bytes when it fits or cannot be read."""
    try:
        with av.open(io.BytesIO(jpeg), "r") as container:
            frame = next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration, ValueError) as err:
        _LOGGER.debug("cannot read a JPEG to resize it (%s); leaving it as is", err)
        return jpeg
    size = fit_size(frame.width, frame.height, max_width, max_height)
    if size == (frame.width, frame.height):
        return jpeg
    return encode_jpeg(frame, size, quality)
