"""One talker per doorbell: waking its live call, holding it, and feeding its outbound track.

``TalkService.open`` claims the doorbell (``TalkBusy`` if someone else has it), joins its stream
as a consumer named ``talk`` (which starts the live call if it sleeps, and keeps it up while
talking: ``/api/streams`` shows the talker among the viewers), and waits for the call to be
negotiated. The call's ``TalkTrack`` is what the doorbell receives; a call without one (the
doorbell answered without audio it receives) is ``TalkUnsupported``.

``TalkSession.write`` converts any frame once, to what the negotiated encoder takes (signed
16-bit at its clock rate, 20 ms frames; see ``TalkTrack``); aiortc's encoder then encodes it
once. A stereo source is mixed down to mono first: the doorbell has one speaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable
from typing import Protocol, runtime_checkable

import av
import numpy as np

from bridge.errors import UnknownDevice
from bridge.media.buffers import StreamEnded, Subscriber
from bridge.media.hub import Hub, Stream
from bridge.media.talk_track import TalkTrack

from .errors import TalkBusy, TalkUnavailable, TalkUnsupported

__all__ = ["TalkService", "TalkSession", "Talkable"]

_LOGGER = logging.getLogger(__name__)

_POLL = 0.02  # how often a waking stream is looked at: small against a talk's latency budget
# A write that finds no room for this long means the call's sender stopped taking audio.
_STALL_SECONDS = 5.0


@runtime_checkable
class Talkable(Protocol):
    """A live call that may carry audio to the doorbell (``CloudLiveCall`` is one)."""

    @property
    def talk_track(self) -> TalkTrack | None:
        """The outbound track; None when the doorbell does not receive audio."""
        ...

    @property
    def talk_refusal(self) -> str:
        """Why there is no talk track (empty when there is one)."""
        ...


class TalkSession:
    """One talker's turn at one doorbell: ``write`` or ``play`` audio, then ``close``."""

    def __init__(
        self,
        service: TalkService,
        stream: Stream,
        source: str,
        track: TalkTrack,
        holder: Subscriber,
    ) -> None:
        self.stream_name = stream.name
        self.source = source
        self._service = service
        self._track = track
        self._holder = holder
        self._drain = asyncio.get_running_loop().create_task(
            _discard(holder), name=f"talk hold {stream.name}"
        )
        self._resampler = self._new_resampler()
        self._input: tuple[str, str, int] | None = None  # format, layout, rate of the input
        self.samples = 0  # samples handed to the track, at its rate
        self._closed = False

    @property
    def codec(self) -> str:
        """The codec the doorbell accepted ("audio/opus", "audio/PCMU" or "audio/PCMA")."""
        return self._track.codec

    @property
    def seconds(self) -> float:
        """Seconds of audio handed to the doorbell so far."""
        return self.samples / self._track.sample_rate

    async def write(self, frame: av.AudioFrame) -> None:
        """Send one frame of any rate, layout or format; waits while 200 ms are queued."""
        if self._closed:
            raise TalkUnavailable(f"the talk to {self.stream_name} is over")
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._input is not None and shape != self._input:
            # PyAV's resampler is set up by its first frame and refuses others: a source that
            # changes (a browser switching microphones) gets a fresh one, the old one flushed.
            await self._flush()
        self._input = shape
        for out in self._resampler.resample(frame):
            await self._put(out)

    def _new_resampler(self) -> av.AudioResampler:
        track = self._track
        return av.AudioResampler(
            format="s16", layout="mono", rate=track.sample_rate, frame_size=track.samples_per_frame
        )

    def _layout(self, mono: av.AudioFrame) -> av.AudioFrame:
        """The mono frame as the track's layout: both channels the same voice at full level."""
        if self._track.layout == "mono":
            return mono
        both = np.repeat(mono.to_ndarray(), 2, axis=1).astype(np.int16)  # packed: L R L R ...
        frame = av.AudioFrame.from_ndarray(both, format="s16", layout="stereo")
        frame.sample_rate = mono.sample_rate
        return frame

    async def _put(self, frame: av.AudioFrame) -> None:
        if self._track.readyState != "live":
            raise TalkUnavailable(f"the live call to {self.stream_name} ended while talking")
        try:
            async with asyncio.timeout(_STALL_SECONDS):
                await self._track.put(self._layout(frame))
        except TimeoutError:
            raise TalkUnavailable(
                f"{self.stream_name} took no audio for {_STALL_SECONDS:g} s"
            ) from None
        except Exception as err:  # aiortc's MediaStreamError: the track ended meanwhile
            raise TalkUnavailable(
                f"the live call to {self.stream_name} ended while talking"
            ) from err
        self.samples += frame.samples

    async def play(self, frames: AsyncIterable[av.AudioFrame]) -> None:
        """Send every frame, paced in real time; returns once the last one has been sent."""
        async for frame in frames:
            await self.write(frame)
        await self.drain()

    async def drain(self) -> None:
        """Wait until everything written has been sent (``close`` alone drops what is queued)."""
        await self._flush()
        try:
            async with asyncio.timeout(_STALL_SECONDS + self._track.queued * 0.02):
                await self._track.drained()
        except TimeoutError:
            raise TalkUnavailable(
                f"{self.stream_name} took no audio for {_STALL_SECONDS:g} s"
            ) from None

    async def _flush(self) -> None:
        if self._input is None:
            return  # nothing was resampled yet
        for out in self._resampler.resample(None):
            await self._put(out)
        # A flushed resampler takes no more frames; the next write starts a new one.
        self._resampler = self._new_resampler()
        self._input = None

    async def close(self) -> None:
        """End the turn: unsent audio is dropped, the doorbell is free; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._track.readyState == "live":
                self._track.clear()
                self._track.end_spurt()
        finally:
            self._drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain
            self._holder.close()
            self._service._release(self)

    async def __aenter__(self) -> TalkSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _discard(holder: Subscriber) -> None:
    """Read and drop the stream's packets: the talker holds the call, it watches nothing."""
    with contextlib.suppress(StreamEnded):
        while True:
            await holder.get()


class TalkService:
    """Talking to doorbells, one talker per doorbell at a time."""

    def __init__(self, hub: Hub, *, wake_timeout: float = 20.0) -> None:
        self._hub = hub
        self.wake_timeout = wake_timeout
        self._talkers: dict[str, str] = {}  # stream name -> who talks (claimed before waking)
        self._sessions: dict[str, TalkSession] = {}

    def talker(self, stream_name: str) -> str | None:
        """Who is talking to this doorbell now, if anyone."""
        stream = self._hub.get(stream_name)
        return None if stream is None else self._talkers.get(stream.name)

    async def open(self, stream_name: str, source: str) -> TalkSession:
        """Claim the doorbell, wake its live call if needed, and return the talk session.

        Raises ``TalkBusy`` (someone talks already), ``TalkUnavailable`` (the call cannot
        start: the reason is the message), ``TalkUnsupported`` (the doorbell takes no audio)
        and ``UnknownDevice``.
        """
        stream = self._hub.get(stream_name)
        if stream is None:
            raise UnknownDevice(stream_name, sorted(s.name for s in self._hub.streams))
        current = self._talkers.get(stream.name)
        if current is not None:
            raise TalkBusy(stream.name, current)
        self._talkers[stream.name] = source  # claimed now: a second open() gets TalkBusy
        holder = stream.subscribe("talk")
        try:
            track = await self._wait_track(stream)
            session = TalkSession(self, stream, source, track, holder)
        except BaseException:
            holder.close()
            del self._talkers[stream.name]
            raise
        self._sessions[stream.name] = session
        _LOGGER.info("talk: %s talks to %s (%s)", source, stream.name, track.codec)
        return session

    async def _wait_track(self, stream: Stream) -> TalkTrack:
        """The live call's talk track once it is negotiated; raises if it cannot be had."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wake_timeout
        attempts = stream.reconnects
        while True:
            session = stream.session
            if session is not None:
                if not isinstance(session, Talkable):
                    raise TalkUnsupported(f"{stream.name}: this live source carries no talk")
                track = session.talk_track
                if track is None:
                    reason = session.talk_refusal or "the doorbell takes no audio"
                    raise TalkUnsupported(f"{stream.name}: {reason}")
                # Media flowing means DTLS is up, so the sender takes frames at once: waiting
                # for it here keeps a slow ICE/TURN setup from counting as a stalled talk.
                if track.readyState == "live" and stream.state == "live":
                    return track
            if stream.reconnects > attempts:
                # An attempt made since we asked failed: say why rather than wait it out.
                raise TalkUnavailable(f"{stream.name} is unavailable: {stream.error}")
            if loop.time() >= deadline:
                why = f": {stream.error}" if stream.error else ""
                raise TalkUnavailable(
                    f"{stream.name}: no live call after {self.wake_timeout:g} s{why}"
                )
            await asyncio.sleep(_POLL)

    def _release(self, session: TalkSession) -> None:
        if self._sessions.get(session.stream_name) is session:
            del self._sessions[session.stream_name]
            self._talkers.pop(session.stream_name, None)
            _LOGGER.info(
                "talk: %s stopped talking to %s after %.1f s",
                session.source,
                session.stream_name,
                session.seconds,
            )

    async def close(self) -> None:
        """End every talk; safe to call twice."""
        for session in list(self._sessions.values()):
            await session.close()
