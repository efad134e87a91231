"""A clip while it is being recorded: its events, its end, and how it is told to stop.

The end is a deadline on the stream's monotonic clock (last event + post-roll, capped at first frame
+ max length). A timer closes the clip's hub subscriber when the deadline passes; the capture
loop then drains what is queued and ends. Extending only moves the deadline: the timer
re-arms itself when it fires early, so an event costs no timer churn.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

from bridge.clock import Clock, Timer
from bridge.media.buffers import Subscriber
from bridge.media.hub import Stream
from bridge.record.index import Clip, ClipDict
from bridge.record.store import safe_name

__all__ = ["ActiveClip", "RecordingDict"]


class RecordingDict(TypedDict):
    """A clip being recorded, as ``/api/record`` gives it."""

    device: str
    device_id: str
    event: str  # what started it ("manual" for a manual start)
    events: int  # events in the clip: the first and each that extended it
    manual: bool
    seconds: float  # recorded so far
    ends_in: float
    preroll: float
    clip: ClipDict | None  # the index row, once the first keyframe arrived


class ActiveClip:
    """A clip being recorded: what triggered it, until when, and its index row once written."""

    def __init__(
        self,
        stream: Stream,
        sub: Subscriber,
        event: str,
        activity_id: str | None,
        manual: bool,
        now: float,
        clock: Clock,
    ) -> None:
        self.sub = sub  # the recorder's place on the stream
        self.device_id = stream.device_id
        self.device = safe_name(stream.name, safe_name(stream.device_id, "device"))
        self.event = event
        self.activity_id = activity_id
        self.manual = manual
        self.events = 1
        self.clock = clock  # the recorder's, which is the stream's
        self.triggered = now  # clock.now() of the first event
        self.deadline = now  # set by the recorder: last event + post-roll
        self.cap = float("inf")  # first frame + max length
        self.first_frame: float | None = None  # arrival (clock.now()) of the first frame
        self.preroll = 0.0  # seconds of video before the first event, once known
        self.clip: Clip | None = None  # the index row, once the first keyframe arrived
        self._start_timeout = 0.0
        self._ended = False
        self._timer: Timer | None = None
        self._result: asyncio.Future[Clip | None] = asyncio.get_running_loop().create_future()
        self.thumbnail: asyncio.Future[bool] | None = None  # the JPEG being made

    async def wait(self) -> Clip | None:
        """The finished clip's index row (None when nothing could be recorded)."""
        return await asyncio.shield(self._result)

    def extend(self, now: float, postroll: float, *, manual: bool, activity_id: str | None) -> None:
        """Another event: end ``postroll`` after it (a manual start runs to the cap)."""
        self.events += 1
        self.manual = self.manual or manual
        self.activity_id = self.activity_id or activity_id
        self.deadline = (
            self.cap if self.manual else min(self.cap, max(self.deadline, now + postroll))
        )

    def end_now(self) -> None:
        """Stop taking packets; the clip is then finished with what it has."""
        self._ended = True
        self.deadline = self.cap = self.clock.now()
        self._expire()

    def as_dict(self) -> RecordingDict:
        """A JSON-friendly summary for the API."""
        now = self.clock.now()
        return {
            "device": self.device,
            "device_id": self.device_id,
            "event": self.event,
            "events": self.events,
            "manual": self.manual,
            "seconds": round(now - self.first_frame, 1) if self.first_frame else 0.0,
            "ends_in": round(max(0.0, self._effective_deadline() - now), 1),
            "preroll": round(self.preroll, 2),
            "clip": self.clip.as_dict() if self.clip else None,
        }

    def _effective_deadline(self) -> float:
        if self.first_frame is None and not self._ended:  # a cold stream takes a while
            return max(self.deadline, self.triggered + self._start_timeout)
        return min(self.deadline, self.cap)

    def _arm(self, start_timeout: float) -> None:
        self._start_timeout = start_timeout
        self._expire()

    def _expire(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        delay = self._effective_deadline() - self.clock.now()
        if delay > 0:
            self._timer = self.clock.call_later(delay, self._expire)
        else:
            self.sub.close()  # the capture loop drains what is queued, then ends

    def _resolve(self, clip: Clip | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._result.done():
            self._result.set_result(clip)
