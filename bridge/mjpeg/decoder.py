"""The lazy decoder of one stream: it holds a hub subscription only while pictures are wanted.

MJPEG viewers want every frame decoded (P-frames need their references) and the frames due at
their frame rate encoded; a pending snapshot only wants the next fresh keyframe. Both are served
by one subscription and one decoder per stream. When the last viewer leaves and no snapshot
waits, the subscription is closed, so the hub can stop the doorbell's live call when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Literal, TypedDict

from bridge.errors import BridgeError
from bridge.media.buffers import StreamEnded, Subscriber
from bridge.media.hub import Stream
from bridge.media.packet import MediaPacket
from bridge.mjpeg.options import FrameSpec
from bridge.mjpeg.picture import encode_jpeg
from bridge.mjpeg.worker import CLOCK, Batch, Picture, Result, Worker
from bridge.tasks import TaskSet

__all__ = [
    "DecoderStats",
    "Decoding",
    "SnapshotSource",
    "SnapshotUnavailable",
    "StreamDecoder",
    "Viewer",
]

_LOGGER = logging.getLogger(__name__)

_MAX_LAG = 1.0  # seconds behind the live edge before skipping ahead to the next keyframe
# The hub's own bound on what waits for the worker; audio rides along in the same queue. It is
# large enough for a whole cached GOP (the picture a new viewer sees at once).
_QUEUE_PACKETS = 600
_KEYFRAME_REQUEST_INTERVAL = 1.0

SnapshotSource = Literal["live", "cache", "cloud"]
# What the decoder decodes: nothing, every frame (viewers), or keyframes only (snapshots).
Decoding = Literal["off", "all", "keyframes"]


class DecoderStats(TypedDict):
    """A stream's decoder: its viewers, encoders and frame counts."""

    viewers: int
    outputs: int  # one per picture size being encoded
    encoders: int
    decoding: Decoding
    frames_decoded: int
    frames_encoded: int
    packets_skipped: int


class SnapshotUnavailable(BridgeError):
    """No picture could be had (from the live view, and from the cloud if it was asked)."""

    transient = True

    def __init__(self, message: str, *, cloud_tried: bool = False) -> None:
        super().__init__(message)
        self.cloud_tried = cloud_tried


class _Output:
    """What the viewers of one spec share: the newest JPEG and the frame-rate clock."""

    def __init__(self, spec: FrameSpec) -> None:
        self.spec = spec
        self.viewers = 0
        self.seq = 0
        self.jpeg = b""
        self.size = (0, 0)
        self.next_due: float | None = None
        self.ended = False
        self._changed = asyncio.Event()

    def publish(self, jpeg: bytes, size: tuple[int, int]) -> None:
        self.seq += 1
        self.jpeg, self.size = jpeg, size
        # A fresh event per frame: every waiter of the old one wakes, and nobody clears it.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def end(self) -> None:
        self.ended = True
        self._changed.set()

    async def wait_after(self, seq: int, timeout: float) -> None:
        if self.seq == seq and not self.ended:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()


class Viewer:
    """One MJPEG client: the newest JPEG of its output each time, never a backlog."""

    def __init__(self, decoder: StreamDecoder, output: _Output) -> None:
        self._decoder = decoder
        self._output = output
        self._seen = 0
        self._closed = False

    @property
    def size(self) -> tuple[int, int]:
        """Width and height of the latest JPEG ((0, 0) before the first)."""
        return self._output.size

    async def next(self, timeout: float) -> bytes | None:
        """A JPEG newer than the last one returned, or None if none came in time.

        Raises ``StreamEnded`` once the stream or the service has stopped.
        """
        output = self._output
        deadline = time.monotonic() + timeout
        while output.seq == self._seen:
            if output.ended or self._closed:
                raise StreamEnded(self._decoder.stream.name)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await output.wait_after(self._seen, left)
        self._seen = output.seq
        return output.jpeg

    def close(self) -> None:
        """Stop watching; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._decoder._release(self._output)

    def __enter__(self) -> Viewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(eq=False)
class _Run:
    """One hub subscription and the worker that decodes it."""

    sub: Subscriber
    worker: Worker
    since: float  # packets that arrived before this are the hub's cached GOP
    resync: bool = False  # packets were dropped; the worker must wait for a keyframe


@dataclass(eq=False)
class _Waiter:
    not_before: float  # the oldest arrival time acceptable for this snapshot
    future: asyncio.Future[Picture]


class StreamDecoder:
    """Decodes one stream for MJPEG viewers and snapshots, only while either needs it."""

    def __init__(self, stream: Stream, quality: int) -> None:
        self.stream = stream
        self.quality = quality
        self.frames_decoded = 0
        self.frames_encoded = 0
        self.packets_skipped = 0
        self._outputs: dict[FrameSpec, _Output] = {}
        self._waiters: list[_Waiter] = []
        self._picture: Picture | None = None
        self._run: _Run | None = None
        self._tasks = TaskSet()  # the decoding pump
        self._last_key_request = 0.0
        self._closed = False
        stream.on_change(self._on_stream_change)

    # -- MJPEG viewers -------------------------------------------------------------------------

    def watch(self, spec: FrameSpec) -> Viewer:
        """Start watching at ``spec``; viewers with equal specs share every JPEG."""
        if self._closed:
            raise StreamEnded(self.stream.name)
        output = self._outputs.get(spec)
        if output is None:
            output = self._outputs[spec] = _Output(spec)
        output.viewers += 1
        if self._run is not None and len(self._outputs) == 1 and output.viewers == 1:
            # The running decoder saw keyframes only (for a snapshot): it must wait for the
            # next keyframe before it can decode every frame, so ask for one now.
            self._request_keyframe()
        self._start()
        return Viewer(self, output)

    def _release(self, output: _Output) -> None:
        output.viewers -= 1
        if output.viewers <= 0 and self._outputs.get(output.spec) is output:
            del self._outputs[output.spec]
        self._maybe_stop()

    # -- snapshots -----------------------------------------------------------------------------

    async def snapshot(
        self, spec: FrameSpec, max_age: float, timeout: float
    ) -> tuple[bytes, SnapshotSource]:
        """A JPEG at most ``max_age`` old and where it came from ("cache" or "live")."""
        picture = self._picture
        source: SnapshotSource = "cache"
        if picture is None or time.monotonic() - picture.arrival > max_age:
            picture, source = await self._fresh_picture(max_age, timeout), "live"
        size = spec.size_for(picture.frame.width, picture.frame.height)
        jpeg = picture.jpegs.get(size)
        if jpeg is None:
            jpeg = await asyncio.to_thread(encode_jpeg, picture.frame, size, self.quality)
            picture.jpegs[size] = jpeg
        return jpeg, source

    async def _fresh_picture(self, max_age: float, timeout: float) -> Picture:
        if self._closed:
            raise SnapshotUnavailable("shutting down")
        if self.stream.state == "error":
            raise SnapshotUnavailable(f"the live view is failing: {self.stream.error}")
        waiter = _Waiter(time.monotonic() - max_age, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._start()
        try:
            async with asyncio.timeout(timeout):
                return await waiter.future
        except TimeoutError:
            raise SnapshotUnavailable(
                f"no picture from the live view within {timeout:g} s"
            ) from None
        finally:
            self._waiters.remove(waiter)
            waiter.future.cancel()
            self._maybe_stop()

    def _on_stream_change(self, stream: Stream) -> None:
        # The hub says "error" once its retries are spaced at the longest backoff; and a stream
        # whose first attempt failed before any picture (a sleeping doorbell's 599, say) will
        # not have one soon either. Either way a snapshot had better ask the cloud now than
        # wait out its timeout.
        never_live = stream.state == "reconnecting" and stream.started_at is None
        if stream.state == "error" or never_live:
            self._fail_waiters(f"the live view is failing: {stream.error}")

    def _fail_waiters(self, message: str) -> None:
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(SnapshotUnavailable(message))

    # -- the subscription ----------------------------------------------------------------------

    def _start(self) -> None:
        if self._run is not None:
            return
        sub = self.stream.subscribe("mjpeg", max_packets=_QUEUE_PACKETS)
        run = _Run(sub, Worker(self.quality), time.monotonic())
        self._tasks.spawn(self._pump(run), name=f"mjpeg {self.stream.name}")
        self._run = run

    def _maybe_stop(self) -> None:
        run = self._run
        if run is not None and not self._outputs and not self._waiters:
            self._run = None
            run.sub.close()  # wakes the pump, which ends; the hub may now go idle

    async def _pump(self, run: _Run) -> None:
        sub = run.sub
        try:
            while not sub.closed:
                packets = [await sub.get()]
                while (more := sub.get_nowait()) is not None:
                    packets.append(more)
                video = self._skip_lag(run, [p for p in packets if p.kind == "video"])
                if not video:
                    continue
                result = await asyncio.to_thread(run.worker.process, self._batch(run, video))
                if not sub.closed:
                    self._apply(result)
        except StreamEnded:
            if not sub.closed:  # the hub stopped the stream for good, not us leaving it
                self._end_all("the stream stopped")
        except Exception:
            _LOGGER.exception("stream %s: MJPEG decoder failed", self.stream.name)
            self._end_all("the decoder failed")
        finally:
            sub.close()
            if self._run is run:
                self._run = None

    def _skip_lag(self, run: _Run, video: list[MediaPacket]) -> list[MediaPacket]:
        """Drop what waited too long for the worker, resuming at the newest keyframe."""
        # The cached GOP a subscription starts with is old by nature; it is not lag.
        if not video or video[0].arrival <= run.since:
            return video
        # Behind means the oldest packet waited too long (a slow worker), or the packets waiting
        # span too much video (a burst after a network stall): either way, showing them would
        # only fast-forward through the past.
        waited = time.monotonic() - video[0].arrival
        span = (video[-1].pts - video[0].pts) / CLOCK
        if waited <= _MAX_LAG and span <= _MAX_LAG:
            return video
        keys = [i for i, p in enumerate(video) if p.keyframe]
        start = keys[-1] if keys else len(video)
        if start:
            self.packets_skipped += start
            run.resync = True
            _LOGGER.debug("stream %s: decoder behind, skipped %d frames", self.stream.name, start)
            if not keys:
                self._request_keyframe()
        return video[start:]

    def _batch(self, run: _Run, video: list[MediaPacket]) -> Batch:
        full = bool(self._outputs)
        fresh_after = min((w.not_before for w in self._waiters), default=0.0)
        if not full and any(p.keyframe and p.arrival < fresh_after for p in video):
            self._request_keyframe()  # the cached keyframe is too old for a snapshot
        resync, run.resync = run.resync, False
        due = {spec: out.next_due for spec, out in self._outputs.items()}
        return Batch(video, full, fresh_after, due, self.stream.sps, self.stream.pps, resync)

    def _apply(self, result: Result) -> None:
        self.frames_decoded += result.decoded
        self.frames_encoded += result.encoded
        for spec, next_due in result.due.items():
            output = self._outputs.get(spec)
            if output is not None:
                output.next_due = next_due
        for spec, (jpeg, size) in result.jpegs.items():
            output = self._outputs.get(spec)
            if output is not None:
                output.publish(jpeg, size)
        picture = result.newest
        if picture is not None:
            self._picture = picture
            for waiter in self._waiters:
                if picture.arrival >= waiter.not_before and not waiter.future.done():
                    waiter.future.set_result(picture)

    def _request_keyframe(self) -> None:
        now = time.monotonic()
        if now - self._last_key_request >= _KEYFRAME_REQUEST_INTERVAL:
            self._last_key_request = now
            self.stream.request_keyframe()

    def _end_all(self, reason: str) -> None:
        # Forget the outputs too: whoever watches next gets fresh ones and a new subscription.
        outputs = list(self._outputs.values())
        self._outputs.clear()
        for output in outputs:
            output.end()
        self._fail_waiters(reason)

    # -- status and shutdown -------------------------------------------------------------------

    def stats(self) -> DecoderStats:
        """Viewers, encoders and frame counts, for the status API."""
        run = self._run
        decoding: Decoding = "off" if run is None else "all" if self._outputs else "keyframes"
        return {
            "viewers": sum(o.viewers for o in self._outputs.values()),
            "outputs": len(self._outputs),
            "encoders": len(run.worker.encoders) if run is not None else 0,
            "decoding": decoding,
            "frames_decoded": self.frames_decoded,
            "frames_encoded": self.frames_encoded,
            "packets_skipped": self.packets_skipped,
        }

    async def close(self) -> None:
        """End every viewer and pending snapshot and stop decoding; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._end_all("shutting down")
        run, self._run = self._run, None
        if run is not None:
            run.sub.close()
        # A batch already in the worker thread finishes there on its own; its result is dropped.
        await self._tasks.cancel_all()
