"""The MJPEG/snapshot service: a lazy decoder per stream, and the cloud snapshot as a fallback."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypedDict

from bridge.errors import BridgeError
from bridge.media.buffers import StreamEnded
from bridge.media.hub import Stream
from bridge.mjpeg.decoder import (
    Decoding,
    SnapshotSource,
    SnapshotUnavailable,
    StreamDecoder,
    Viewer,
)
from bridge.mjpeg.options import FrameSpec, MjpegOptions
from bridge.mjpeg.picture import fit_jpeg

__all__ = ["Fallback", "MjpegService", "MjpegStats", "Snapshot", "SnapshotSource"]

_LOGGER = logging.getLogger(__name__)

Fallback = Callable[[str], Awaitable[bytes]]
"""Device id -> a JPEG from somewhere other than the live view (the SkyBell cloud's snapshot)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A JPEG and where it came from: a fresh live keyframe, a recent decoded frame, the cloud."""

    jpeg: bytes
    source: SnapshotSource


# total=False rather than NotRequired: with postponed annotations, Python 3.11's TypedDict cannot
# see NotRequired at run time, and tests/test_api_shapes.py reads __optional_keys__.
class MjpegStats(TypedDict, total=False):
    """A stream's MJPEG facts: the decoder's keys while it exists, and snapshots by source.

    Empty for a stream that has had neither a viewer nor a snapshot.
    """

    viewers: int
    outputs: int
    encoders: int
    decoding: Decoding
    frames_decoded: int
    frames_encoded: int
    packets_skipped: int
    snapshots: dict[str, int]  # source ("live", "cache", "cloud", "failed") -> count


class MjpegService:
    """MJPEG viewers and JPEG snapshots of every stream, decoding only while wanted."""

    def __init__(self, options: MjpegOptions, fallback: Fallback | None = None) -> None:
        self.options = options
        self._fallback = fallback
        self._decoders: dict[str, StreamDecoder] = {}
        self._snapshots: dict[str, Counter[str]] = {}
        self._closed = False

    def _decoder(self, stream: Stream) -> StreamDecoder:
        decoder = self._decoders.get(stream.name)
        if decoder is None or decoder.stream is not stream:
            decoder = self._decoders[stream.name] = StreamDecoder(stream, self.options.quality)
        return decoder

    def spec(
        self, fps: float | None = None, width: int | None = None, height: int | None = None
    ) -> FrameSpec:
        """A request's values clamped to the configured limits (``ValueError`` on nonsense)."""
        return self.options.spec(fps, width, height)

    def watch(self, stream: Stream, spec: FrameSpec) -> Viewer:
        """Start an MJPEG viewer; close it (or use ``with``) to let the decoder stop.

        Raises ``StreamEnded`` once the service is closed.
        """
        if self._closed:
            raise StreamEnded(stream.name)
        return self._decoder(stream).watch(spec)

    async def snapshot(self, stream: Stream, spec: FrameSpec) -> Snapshot:
        """A recent picture of ``stream``: live if it can be had in time, else the cloud's."""
        opts = self.options
        counts = self._snapshots.setdefault(stream.name, Counter())
        try:
            if self._closed:
                raise SnapshotUnavailable("shutting down")
            source: SnapshotSource
            jpeg, source = await self._decoder(stream).snapshot(
                spec, opts.snapshot_max_age, opts.snapshot_timeout
            )
        except SnapshotUnavailable as live_err:
            if self._fallback is None or self._closed:
                counts["failed"] += 1
                raise
            # Debug only: a doorbell that is down is logged once by the hub, and clients poll
            # snapshots every few seconds.
            _LOGGER.debug(
                "stream %s: no live picture (%s); using the cloud snapshot", stream.name, live_err
            )
            try:
                async with asyncio.timeout(opts.snapshot_timeout):
                    cloud = await self._fallback(stream.device_id)
                if not cloud.startswith(b"\xff\xd8"):
                    raise SnapshotUnavailable("the cloud's picture is not a JPEG")
            except (BridgeError, OSError, TimeoutError) as err:
                counts["failed"] += 1
                reason = str(err) or type(err).__name__
                raise SnapshotUnavailable(
                    f"no live picture ({live_err}) and the cloud snapshot failed ({reason})",
                    cloud_tried=True,
                ) from err
            jpeg = await asyncio.to_thread(fit_jpeg, cloud, spec.width, spec.height, opts.quality)
            source = "cloud"
        counts[source] += 1
        return Snapshot(jpeg, source)

    def stats(self) -> dict[str, MjpegStats]:
        """Per stream: viewers, encoders, frames decoded and encoded, snapshots by source."""
        names = sorted(set(self._decoders) | set(self._snapshots))
        out: dict[str, MjpegStats] = {}
        for name in names:
            decoder = self._decoders.get(name)
            snapshots = dict(self._snapshots.get(name, {}))
            out[name] = (
                {**decoder.stats(), "snapshots": snapshots}
                if decoder is not None
                else {"snapshots": snapshots}
            )
        return out

    async def close(self) -> None:
        """Stop every decoder and end every viewer; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(d.close() for d in self._decoders.values()))
