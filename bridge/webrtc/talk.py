"""Push-to-talk from a viewer: the browser's microphone track, forwarded while the button is held.

The page offers its audio ``sendrecv``; aiortc then decodes whatever the browser sends on it
into ``av.AudioFrame``s. The page attaches its microphone only while talk is held, but the
track is read all the time: aiortc queues decoded frames without bound, so an unread track
would grow for as long as the viewer watches. Frames go to a talk sink (the doorbell's talk
session) only between ``start`` and ``stop``.

The sink is given back by ``stop``, when the viewer's session ends, and after a few seconds
without any audio: a page that vanished mid-talk (tab closed, network gone) must not keep the
doorbell from other talkers until ICE notices, ~30 s later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["InboundTalk", "TalkSink"]

logger = logging.getLogger(__name__)

_IDLE = 3.0  # seconds without microphone audio after which a held talk is given back
_TICK = 0.5


class TalkSink(Protocol):
    """Where the microphone's audio goes: the doorbell's talk session."""

    async def write(self, frame: av.AudioFrame) -> None:
        """Send one frame to the doorbell."""

    async def close(self) -> None:
        """Give the doorbell back to other talkers."""


class InboundTalk:
    """Reads a viewer's inbound audio track and forwards it to a sink while talk is held."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.frames = 0  # frames forwarded to the doorbell
        self.received = 0  # frames decoded from the viewer, talking or not
        self.ended_reason = ""  # why the last talk ended on its own ("" if it did not)
        self._track: MediaStreamTrack | None = None
        self._task: asyncio.Task[None] | None = None
        self._sink: TalkSink | None = None
        self._since = 0.0  # when audio last arrived, or talk started
        self._closed = False

    @property
    def available(self) -> bool:
        """Whether the viewer negotiated sending audio at all."""
        return self._track is not None and not self._closed

    @property
    def talking(self) -> bool:
        """Whether audio is being forwarded to the doorbell now."""
        return self._sink is not None

    def attach(self, track: MediaStreamTrack) -> None:
        """Start reading the viewer's audio track (aiortc's ``track`` event)."""
        if self._closed or self._task is not None:
            return
        self._track = track
        self._task = asyncio.get_running_loop().create_task(
            self._read(track), name=f"{self.label} inbound audio"
        )

    def start(self, sink: TalkSink) -> None:
        """Forward audio to ``sink`` from now on; the caller has opened it and owns nothing more."""
        self._since = time.monotonic()
        self.ended_reason = ""
        self._sink = sink

    async def stop(self, reason: str = "") -> bool:
        """Stop forwarding and close the sink; False if not talking."""
        sink, self._sink = self._sink, None
        if sink is None:
            return False
        self.ended_reason = reason
        try:
            await sink.close()
        except Exception:
            logger.exception("%s: closing the talk session failed", self.label)
        return True

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(track.recv(), _TICK)
                except TimeoutError:
                    if self._sink is not None and time.monotonic() - self._since > _IDLE:
                        logger.info(
                            "%s: no microphone audio for %g s; talk ended", self.label, _IDLE
                        )
                        await self.stop("no audio from the page")
                    continue
                self.received += 1
                self._since = time.monotonic()
                sink = self._sink
                if sink is None or not isinstance(frame, av.AudioFrame):
                    continue
                try:
                    await sink.write(frame)
                except Exception as err:  # the talk service's errors: the call ended, say
                    logger.info("%s: talk ended (%s)", self.label, err)
                    if self._sink is sink:
                        await self.stop(str(err) or type(err).__name__)
                else:
                    self.frames += 1
        except MediaStreamError:
            pass  # the peer connection closed
        finally:
            await self.stop("the viewer left")

    async def close(self) -> None:
        """Stop reading and close any talk; safe to call twice."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.stop("the viewer left")
