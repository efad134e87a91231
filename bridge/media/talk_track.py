"""The outbound audio track of a live call: silent (and free) until someone talks.

The doorbell's peer offers audio ``sendrecv`` with this track as the sender's source. aiortc's
sender loops on ``recv()`` and encodes whatever it returns, so ``recv()`` simply blocks while
nobody talks: no frame is made, encoded or sent, the same as a WebRTC sender with Opus DTX or a
muted microphone. RTP needs no steady flow: receivers (libwebrtc's NetEq, aiortc's jitter
buffer) treat a pause as a gap and play silence, and RTCP keeps the session alive meanwhile.

When talk starts again the RTP timestamps jump by the wall-clock time that passed (a new
talkspurt), as they do after DTX. Keeping them contiguous instead would make the receiver see
seconds of audio arrive "late" at once and grow its jitter buffer, adding delay to everything
said afterwards.

Frames come in already converted by the talker (``TalkSession``) to signed 16-bit at the
negotiated codec's clock rate, 20 ms each, stereo for Opus and mono for G.711: the format
aiortc's Opus (48 kHz stereo) and G.711 (8 kHz mono) encoders take, so the audio is resampled
once and encoded once. (Stereo for Opus because the encoder's own mono-to-stereo step would
mix the voice 3 dB quieter, FFmpeg's centre mix level.) ``recv()`` paces them in real
time, which is what the sender expects of a track (it does not pace by itself).
"""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["FRAME_SECONDS", "TalkTrack"]

FRAME_SECONDS = 0.02  # 20 ms: one Opus or G.711 packet per frame
# A frame this late after the previous one's due time starts a new talkspurt (timestamps jump).
_SPURT_GAP = 0.1
# Frames queued ahead of real time: enough to ride out a slow writer, small enough that what is
# said is heard soon (a writer waits for room beyond this).
_QUEUE_FRAMES = 10


class TalkTrack(MediaStreamTrack):
    """An audio track whose ``recv()`` blocks until talk frames arrive, then paces them."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.sample_rate = 48_000  # set from the negotiated codec by ``configure``
        self.codec = "audio/opus"
        self.frames_sent = 0
        self._time_base = fractions.Fraction(1, self.sample_rate)
        self._queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue(_QUEUE_FRAMES)
        self._event_loop = asyncio.get_running_loop()
        self._t0 = self._event_loop.time()
        self._due: float | None = None  # when the next frame of the current spurt is due
        self._pts = 0  # the next frame's timestamp, in samples

    def configure(self, codec: str, sample_rate: int) -> None:
        """Take the codec the doorbell accepted (before any frame is written)."""
        self.codec = codec
        self.sample_rate = sample_rate
        self._time_base = fractions.Fraction(1, sample_rate)

    @property
    def samples_per_frame(self) -> int:
        """Samples in one 20 ms frame at the negotiated rate."""
        return int(self.sample_rate * FRAME_SECONDS)

    @property
    def layout(self) -> str:
        """The channel layout frames must have: what the codec's encoder takes as it is."""
        return "stereo" if self.codec.lower() == "audio/opus" else "mono"

    @property
    def queued(self) -> int:
        """Frames waiting to be sent."""
        return self._queue.qsize()

    async def put(self, frame: av.AudioFrame) -> None:
        """Queue one converted frame; waits while the queue holds ``_QUEUE_FRAMES``."""
        if self.readyState != "live":
            raise MediaStreamError
        await self._queue.put(frame)

    def silence(self) -> av.AudioFrame:
        """One 20 ms frame of silence in the track's format."""
        channels = 2 if self.layout == "stereo" else 1
        samples = np.zeros((1, self.samples_per_frame * channels), dtype=np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=self.layout)
        frame.sample_rate = self.sample_rate
        return frame

    def clear(self) -> None:
        """Drop every queued frame (a talker gave up mid-way)."""
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()

    def end_spurt(self) -> None:
        """Queue two silent frames (without waiting) to end the talkspurt cleanly.

        aiortc's Opus encoder hands out each packet one frame late (libopus's lookahead), so
        the last spoken frame would otherwise go out only at the start of the next talk.
        """
        for _ in range(2):
            if not self._queue.full():
                self._queue.put_nowait(self.silence())

    async def drained(self) -> None:
        """Wait until every queued frame has been sent and its 20 ms have passed."""
        await self._queue.join()
        if self._due is not None:
            delay = self._due - self._event_loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    async def recv(self) -> av.AudioFrame:
        """The next talk frame at its time; blocks while nobody talks."""
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        try:
            if frame is None:  # stop(): wake the sender so it ends
                raise MediaStreamError
            now = self._event_loop.time()
            if self._due is None or now > self._due + _SPURT_GAP:
                # A new talkspurt: the timeline jumps to wall-clock time (see the docstring).
                self._pts = max(self._pts, round((now - self._t0) * self.sample_rate))
                self._due = now
            elif self._due > now:
                await asyncio.sleep(self._due - now)
            frame.pts = self._pts
            frame.time_base = self._time_base
            self._pts += frame.samples
            self._due += frame.samples / self.sample_rate
            self.frames_sent += 1
            return frame
        finally:
            self._queue.task_done()

    def stop(self) -> None:
        """End the track: the sender's loop stops, writers get ``MediaStreamError``."""
        if self.readyState == "live":
            self.clear()
            self._queue.put_nowait(None)
        super().stop()
