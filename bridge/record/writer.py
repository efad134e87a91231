"""One clip's muxer on its own thread, so file writes never stall the event loop.

The loop hands packets over with ``put`` (a queue append, microseconds); the thread remuxes
them with ``Mp4Writer`` and fsyncs now and then. A write error (a full disk) stops the muxing
but not the thread: the clip is closed as far as it got, and the error is reported.

Resolution changes mid-clip (libwebrtc's quality scaler: a new SPS/PPS in front of an IDR) stay
in one clip, with the new parameter sets in-band at the change. A user asked for one clip of a
doorbell press, not two because the encoder changed size in the middle, and a clip split at a
change would leave the second part without the event's index row (or with a duplicate). The
alternatives were checked: FFmpeg's mp4 muxer, through PyAV, keeps the ``avc1`` sample entry
(a ``codec_tag`` of ``avc3``, which declares in-band parameter sets, is ignored) and cannot add
a second sample description to a fragmented file. FFmpeg, and so ffprobe, VLC, mpv and
Chromium's <video>, follow in-band parameter sets in ``avc1`` samples: the tests play such a
clip through two changes in ffmpeg and in Chromium. The track header keeps the first size.
Every keyframe is written with its parameter sets in front (the ones last seen in-band when
it came without), so a player that seeks past a change decodes the IDR it lands on instead of
applying the ``avcC``'s first-size SPS to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
from collections.abc import Mapping
from pathlib import Path

from bridge.media.mp4 import Mp4Writer
from bridge.media.packet import NAL_PPS, NAL_SPS, MediaPacket, h264_nal_types
from bridge.media.sps import ParameterSetTracker
from bridge.record.mp4file import fsync_path

__all__ = ["ClipWriter"]

_LOGGER = logging.getLogger(__name__)
_TRANSCODABLE = ("opus", "pcmu", "pcma")  # what AacTranscoder takes
_START = b"\x00\x00\x00\x01"


class ClipWriter:
    """Writes one fragmented MP4 from hub packets in a worker thread."""

    def __init__(
        self,
        path: Path,
        *,
        audio: bool,
        fragment_seconds: float,
        metadata: Mapping[str, str],
        fsync_every: float = 5.0,
        max_backlog: int = 3000,
    ) -> None:
        self.path = path
        self.error: BaseException | None = None
        self.dropped = 0
        self._mp4 = Mp4Writer(
            path, audio=audio, fragment_seconds=fragment_seconds, metadata=metadata
        )
        self._fsync_every = fsync_every
        self._max_backlog = max_backlog
        self._skip_to_keyframe = False
        self._params = ParameterSetTracker()
        self._queue: queue.SimpleQueue[MediaPacket | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._finishing = False
        self._thread = threading.Thread(target=self._run, name=f"clip {path.name}", daemon=True)
        self._thread.start()

    @property
    def frames(self) -> int:
        """Video frames muxed so far."""
        return self._mp4.frames

    def put(self, packet: MediaPacket) -> None:
        """Queue a packet for the file (never blocks)."""
        if self._finishing or self.error is not None:
            return
        if packet.kind == "audio" and packet.codec not in _TRANSCODABLE:
            return  # no AAC from this codec: the clip is video-only rather than broken
        if self._queue.qsize() >= self._max_backlog:
            # The disk cannot keep up: skip ahead to the next keyframe instead of growing
            # memory without bound (a frame without its reference would show as garbage).
            self._skip_to_keyframe = True
        if self._skip_to_keyframe:
            if not (packet.kind == "video" and packet.keyframe):
                self.dropped += 1
                return
            self._skip_to_keyframe = False
        if packet.kind == "video" and packet.keyframe:
            packet = self._with_parameter_sets(packet)
        self._queue.put(packet)

    def _with_parameter_sets(self, key: MediaPacket) -> MediaPacket:
        self._params.update(key.data)
        sps, pps = self._params.current
        types = h264_nal_types(key.data)
        prefix = b""
        if sps is not None and NAL_SPS not in types:
            prefix += _START + sps
        if pps is not None and NAL_PPS not in types:
            prefix += _START + pps
        return dataclasses.replace(key, data=prefix + key.data) if prefix else key

    def finish(self) -> None:
        """No more packets: close the file once the queue is written. Safe to call twice."""
        if not self._finishing:
            self._finishing = True
            self._queue.put(None)

    async def wait(self) -> None:
        """Until the file is closed (call ``finish`` first)."""
        await asyncio.shield(self._done)

    def _run(self) -> None:
        last_sync: float | None = None
        try:
            while (packet := self._queue.get()) is not None:
                if self.error is not None:
                    continue  # drain: the loop may still put a few before it notices
                try:
                    self._mp4.write(packet)
                except Exception as err:  # OSError (ENOSPC, EIO) or a muxer refusal
                    self.error = err
                    _LOGGER.error("clip %s: write failed, closing it: %s", self.path.name, err)
                    continue
                # A killed process loses nothing the kernel has; fsync guards the last
                # seconds against a power cut too, at a cost paid only every few seconds.
                if last_sync is None or packet.arrival - last_sync >= self._fsync_every:
                    last_sync = packet.arrival
                    self._sync()
        finally:
            try:
                self._mp4.close()
            except Exception as err:  # the trailer hit the same full disk
                self.error = self.error or err
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                self._loop.call_soon_threadsafe(self._resolve)

    def _sync(self) -> None:
        try:
            if self.path.exists():
                fsync_path(self.path)
        except OSError as err:
            _LOGGER.debug("fsync %s: %s", self.path.name, err)

    def _resolve(self) -> None:
        if not self._done.done():
            self._done.set_result(None)
