"""One publish target: rides the hub's stream and pushes it through a muxer process.

The queue in front of the muxer process is the hub's own ``Subscriber``: bounded
in packets and bytes, and when a target stalls it drops whole GOPs up to the next keyframe (and
counts them), so a stuck media server costs a few seconds of video, never unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TypedDict
from urllib.parse import urlsplit

from bridge.media.buffers import StreamEnded, Subscriber
from bridge.media.hub import Stream
from bridge.media.packet import MediaPacket
from bridge.publish.options import PublishTarget, safe_url
from bridge.publish.process import MuxerFailed, MuxerProcess
from bridge.redact import redact, register

__all__ = ["PublishStats", "Publisher"]

_LOGGER = logging.getLogger(__name__)
# A target's queue: about 10 s of a doorbell's video and audio, and never more than this many
# bytes, whatever the bitrate.
_MAX_PACKETS = 900
_MAX_BYTES = 8 << 20
# At most this much goes down the muxer's pipe at once: behind a slow target the rest stays in
# the subscriber's queue, where it can be dropped whole GOPs at a time, not stuck in a pipe.
_BATCH_BYTES = 256 << 10
_CHECK_EVERY = 1.0  # seconds between while_live checks of whether the stream is still wanted
# Seconds a push must last before the target counts as back: a media server that refuses the
# publish only after taking the first packets (nginx-rtmp's "deny publish") is still down, and
# must keep its backoff and its one warning.
_STABLE = 5.0


class PublishStats(TypedDict):
    """One target in ``/api/streams`` (``publish``) and ``/metrics``."""

    url: str  # credentials masked
    mode: str
    audio: str
    state: str  # waiting (while_live, stream not live), connecting, publishing, unavailable
    bytes: int
    frames: int
    reconnects: int
    dropped: int  # packets skipped while the target fell behind (whole GOPs)
    error: str | None


class _TargetFailed(Exception):
    """The target refused, vanished or stalled; the push is retried after a backoff."""


class Publisher:
    """Pushes one stream to one URL until ``close()``, reconnecting with capped backoff."""

    def __init__(
        self,
        stream: Stream,
        target: PublishTarget,
        *,
        backoff: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        self.stream = stream
        self.target = target
        self.url = safe_url(target.url)
        password = urlsplit(target.url).password
        if password:  # an ad-hoc target's too: the log filter then masks it wherever it shows
            register(password)
        self.state = "waiting"
        self.error: str | None = None
        self.reconnects = 0
        self._done_bytes = 0  # counters of earlier pushes; the current one's are its muxer's
        self._done_frames = 0
        self._muxer: MuxerProcess | None = None
        self._dropped_before = 0  # drops of earlier subscriptions
        # The subscription's drop count when it delivered its first packet: the packets a
        # joining subscriber skips until its first keyframe are not the target's doing.
        self._drop_base: int | None = None
        self._down = False  # "unavailable" was logged; "back" is logged once it publishes again
        self._backoff = backoff
        self._delay = backoff[0]  # the next retry's wait; reset once a push holds
        self._sub: Subscriber | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin publishing (in ``always`` mode this wakes the doorbell at once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"publish {self.stream.name} -> {self.url}"
            )

    @property
    def dropped(self) -> int:
        """Packets dropped because the target fell behind."""
        return self._dropped_before + self._dropped_now()

    def _dropped_now(self) -> int:
        if self._sub is None or self._drop_base is None:
            return 0
        return self._sub.dropped - self._drop_base

    @property
    def bytes(self) -> int:
        """Bytes pushed, all connections together."""
        return self._done_bytes + (self._muxer.bytes if self._muxer is not None else 0)

    @property
    def frames(self) -> int:
        """Video frames pushed, all connections together."""
        return self._done_frames + (self._muxer.frames if self._muxer is not None else 0)

    def stats(self) -> PublishStats:
        """A JSON-friendly summary."""
        return {
            "url": self.url,
            "mode": self.target.mode,
            "audio": self.target.audio,
            "state": self.state,
            "bytes": self.bytes,
            "frames": self.frames,
            "reconnects": self.reconnects,
            "dropped": self.dropped,
            "error": self.error,
        }

    def _wanted(self) -> bool:
        if self.target.mode == "always":
            return True
        # while_live rides along: our own subscription must not be what keeps the stream up.
        others = [s for s in self.stream.subscribers if s is not self._sub]
        return self.stream.state == "live" and bool(others)

    def _subscribe(self) -> Subscriber:
        sub = self.stream.subscribe("publish", max_packets=_MAX_PACKETS, max_bytes=_MAX_BYTES)
        self._sub = sub
        self._drop_base = None
        return sub

    def _unsubscribe(self) -> None:
        if self._sub is not None:
            self._dropped_before += self._dropped_now()
            self._sub.close()
            self._sub = None

    async def _run(self) -> None:
        self._delay = self._backoff[0]
        try:
            while True:
                while not self._wanted():
                    self._unsubscribe()
                    self.state = "waiting"
                    await asyncio.sleep(_CHECK_EVERY)
                sub = self._sub or self._subscribe()
                self.state = "connecting"
                try:
                    await self._push(sub)
                except _TargetFailed as err:
                    # FFmpeg's messages repeat the URL as given, password and all.
                    self.error = redact(str(err).replace(self.target.url, self.url))
                    self.reconnects += 1
                    self.state = "unavailable"
                    if not self._down:
                        self._down = True
                        _LOGGER.warning(
                            "publish %s to %s: unavailable (%s); retrying",
                            self.stream.name,
                            self.url,
                            self.error,
                        )
                    else:
                        _LOGGER.debug(
                            "publish %s to %s: still unavailable", self.stream.name, self.url
                        )
                    await self._wait_out(self._delay)
                    self._delay = min(self._delay * 2, self._backoff[1])
                    continue
                # The push ended without a target failure: the stream stopped, or nobody
                # else watches a while_live stream any more.
                self._unsubscribe()
                self._delay = self._backoff[0]
        finally:
            self._unsubscribe()
            self.state = "stopped"

    async def _wait_out(self, delay: float) -> None:
        """Sleep a backoff, holding (always) or leaving (while_live) the stream meanwhile."""
        if self.target.mode != "always":
            self._unsubscribe()
        await asyncio.sleep(delay)
        if self._sub is not None:
            # What queued during the backoff is stale; the next push starts at a new keyframe.
            while self._sub.get_nowait() is not None:
                pass

    async def _push(self, sub: Subscriber) -> None:
        muxer = MuxerProcess(self.target.url, audio=self.target.audio == "aac")
        self._muxer = muxer
        announced = False
        opened_at: float | None = None
        loop = asyncio.get_running_loop()
        if sub.queued == 0:
            self.stream.request_keyframe()  # a push must start at a keyframe: ask for one now
        try:
            await muxer.start()
            while True:
                try:
                    batch = await self._next_batch(sub, muxer)
                except StreamEnded:
                    return
                if batch is None:
                    return  # no longer wanted (while_live)
                await muxer.send(batch)
                if muxer.opened and opened_at is None:
                    opened_at = loop.time()
                    self.state = "publishing"
                if opened_at is not None and not announced and loop.time() - opened_at >= _STABLE:
                    announced = True
                    self._delay = self._backoff[0]
                    if self._down:
                        self._down = False
                        _LOGGER.warning("publish %s to %s: back", self.stream.name, self.url)
                    self.error = None
        except (MuxerFailed, OSError) as err:
            raise _TargetFailed(str(err) or type(err).__name__) from err
        finally:
            # Closing talks to the target (TEARDOWN, trailer): the child does it, and is killed
            # if it hangs longer than FFmpeg's I/O timeout.
            await muxer.finish()
            self._done_bytes, self._done_frames = self.bytes, self.frames
            self._muxer = None

    async def _next_batch(self, sub: Subscriber, muxer: MuxerProcess) -> list[MediaPacket] | None:
        """What is queued (up to _BATCH_BYTES), waiting for a packet; None once no longer wanted.

        Raises MuxerFailed when the push ended while it waited (a target that hung up).
        """
        while True:
            await muxer.check()
            if not self._wanted():  # checked per batch: packets keep coming while it is live
                return None
            get = asyncio.ensure_future(sub.get())
            done, _ = await asyncio.wait((get,), timeout=_CHECK_EVERY)
            if not done:
                get.cancel()
                try:
                    first = await get  # it may have taken a packet just before the cancel
                except asyncio.CancelledError:
                    continue
            else:
                first = get.result()
            batch, size = [first], len(first.data)
            if self._drop_base is None:
                self._drop_base = sub.dropped
            while size < _BATCH_BYTES and (packet := sub.get_nowait()) is not None:
                batch.append(packet)
                size += len(packet.data)
            return batch

    async def close(self) -> None:
        """Stop publishing; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = "stopped"
