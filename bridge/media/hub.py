"""The stream hub: one live session per doorbell, shared by every consumer.

A ``Stream`` starts its cloud session when the first subscriber arrives (or someone asks to keep
it warm), stops it after ``idle_timeout`` with nobody watching (which ends the cloud live call,
sparing the doorbell's battery), and reconnects with capped backoff however the session dies.
Consumers only ever see the hub's packets: one continuous timeline, starting at a keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypedDict

from bridge.clock import SYSTEM_CLOCK, Clock, Timer
from bridge.errors import AuthError, BridgeError
from bridge.media.buffers import GopRing, Subscriber, Timeline
from bridge.media.histogram import FIRST_FRAME_BOUNDS, Histogram, HistogramStats
from bridge.media.keyframes import KeyframeKind, KeyframeRequests, KeyframeRequestStats
from bridge.media.packet import MediaPacket, extract_sps_pps

__all__ = [
    "BufferStats",
    "Connector",
    "Hub",
    "KeyframesNotAnswered",
    "LiveCall",
    "MediaStalled",
    "Stream",
    "StreamStats",
]

_LOGGER = logging.getLogger(__name__)


class LiveCall(Protocol):
    """One live connection to a doorbell, as the hub sees it."""

    def packets(self) -> AsyncIterator[MediaPacket]:
        """Encoded packets until the session ends (the iterator stops or raises)."""
        ...

    def request_keyframe(self, kind: KeyframeKind = "pli") -> None:
        """Ask the doorbell for a keyframe with RTCP PLI or FIR."""
        ...

    async def close(self) -> None:
        """End the session and the cloud live call; safe to call twice."""
        ...


Connector = Callable[[], Awaitable[LiveCall]]


class BufferStats(TypedDict):
    """The pre-roll ring: bytes held now and the seconds it keeps."""

    bytes: int
    seconds: float


class StreamStats(TypedDict):
    """What the hub knows of a stream: the first keys of its entry in ``/api/streams``."""

    state: str  # idle, starting, live, reconnecting, error
    error: str | None
    codecs: dict[str, str]  # kind ("video", "audio") -> codec name
    viewers: dict[str, int]  # subscriber name ("rtsp", "hls", "webrtc", ...) -> how many
    reconnects: int
    uptime: float  # seconds live (0 unless live)
    bytes_in: int
    keyframes: str  # "ok", "waiting" (a request is on its way) or "not answered"
    keyframe_requests: KeyframeRequestStats
    buffer: BufferStats
    # Seconds from asking for a live call to its first picture, one observation per call.
    first_frame: HistogramStats


class MediaStalled(BridgeError):
    """No media arrived for too long; the session is presumed dead."""

    transient = True


class KeyframesNotAnswered(BridgeError):
    """Consumers wait for a picture and the doorbell ignored every request for too long."""

    transient = True


class Stream:
    """One doorbell's live stream and its subscribers."""

    def __init__(
        self,
        device_id: str,
        name: str,
        connect: Connector,
        *,
        idle_timeout: float = 30.0,
        media_timeout: float = 10.0,
        silence_timeout: float = 2.0,
        ring_seconds: float = 10.0,
        ring_bytes: int = 64 << 20,
        keyframe_interval: float = 2.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.device_id = device_id
        # Every timer, sleep and "now" of the stream: the clock its packets are stamped by.
        self.clock = clock
        self.name = name
        self.idle_timeout = idle_timeout
        self.media_timeout = media_timeout
        # Once media flows, a doorbell sends 15+ video frames and ~50 audio packets a second, so
        # this much silence means it is gone (a peer that vanished without a BYE): waiting the
        # whole media_timeout would leave every consumer without pictures for that long.
        self.silence_timeout = min(silence_timeout, media_timeout)
        # While pre-roll is wanted the doorbell is asked for a keyframe this often, so clips
        # can start near the pre-roll asked for; it is also the age up to which a new
        # subscriber is handed the cached GOP instead of asking for a fresh keyframe.
        self.keyframe_interval = keyframe_interval
        self.state = "idle"  # idle, starting, live, reconnecting, error
        self.error: str | None = None
        self.reconnects = 0
        self.codecs: dict[str, str] = {}
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self.started_at: float | None = None
        self.bytes_in = 0
        self.first_frame = Histogram(FIRST_FRAME_BOUNDS)
        self._call_started: float | None = None  # until the call's first keyframe arrives
        self._connect = connect
        self._backoff = backoff
        self._ring = GopRing(ring_seconds, ring_bytes)
        self.keyframes = KeyframeRequests(name, self._send_keyframe_request, clock=clock)
        self._periodic: Timer | None = None
        self._timeline = Timeline()
        self._subs: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._idle_handle: Timer | None = None
        self._warm_until = 0.0
        self._preroll_until = 0.0  # kept warm for pre-roll: keyframes every keyframe_interval
        # Set by whoever records this stream with pre-roll (the composition root, from the
        # recorder's options): while live, keyframes then come every keyframe_interval, so a
        # press finds a keyframe near its pre-roll in the ring.
        self.wants_preroll = False
        self._session: LiveCall | None = None
        self._keyframe = asyncio.Event()
        self._listeners: list[Callable[[Stream], None]] = []

    # -- subscribers ---------------------------------------------------------------------------

    def subscribe(self, name: str, *, preroll: float = 0.0, **limits: int) -> Subscriber:
        """Join the stream; starts it if needed.

        The subscriber begins at a keyframe: the cached GOP when it is at most
        ``keyframe_interval`` old (a picture at once), reaching back ``preroll`` seconds when
        asked; otherwise the next keyframe, which is requested from the doorbell now. An older
        GOP would hand the consumer a burst of stale video and keep it that far behind live.
        """
        sub = Subscriber(name, self._unsubscribe, on_need_keyframe=self.request_keyframe, **limits)
        now = self.clock.now()
        if preroll > 0:
            backlog = self._ring.since(preroll, now)
        else:
            at = self._ring.last_keyframe_at()
            fresh = at is not None and now - at <= self.keyframe_interval
            backlog = self._ring.last_gop if fresh else []
        for packet in backlog:
            sub.offer(packet)
        self._subs.add(sub)
        self._cancel_idle()
        self._ensure_running()
        self._notify()
        if sub.waiting_for_keyframe:
            self.request_keyframe()
        return sub

    def _unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        self._notify()
        if not self._subs:
            self._schedule_idle()

    @property
    def session(self) -> LiveCall | None:
        """The live call now negotiated, if any (media may not flow yet); talk sends on it."""
        return self._session

    @property
    def subscribers(self) -> list[Subscriber]:
        """Current subscribers (a copy)."""
        return list(self._subs)

    def keep_warm(self, seconds: float, *, preroll: bool = True) -> None:
        """Run the stream for at least ``seconds`` from now, with or without subscribers.

        ``preroll`` (the default: recording keep-warm, a rule's warm action, the warm API)
        also asks for keyframes every ``keyframe_interval`` meanwhile; ``False`` only holds the
        session open, e.g. between an RTSP DESCRIBE and its PLAY.
        """
        now = self.clock.now()
        self._warm_until = max(self._warm_until, now + seconds)
        if preroll:
            self._preroll_until = max(self._preroll_until, now + seconds)
        self._ensure_running()
        self._schedule_idle()
        if self.state == "live" and self._periodic is None:
            self._arm_periodic()

    def preroll(self, seconds: float) -> list[MediaPacket]:
        """Buffered packets reaching back ``seconds`` (from a keyframe), for recordings."""
        return self._ring.since(seconds, self.clock.now())

    def request_keyframe(self) -> None:
        """Ask the doorbell for a keyframe (coalesced and rate-limited; see keyframes.py).

        Before media flows there is nothing to ask: every session opens with a keyframe.
        """
        if self._session is not None and self.state == "live":
            self.keyframes.request()

    def _send_keyframe_request(self, kind: KeyframeKind) -> None:
        if self._session is not None:
            self._session.request_keyframe(kind)

    def _preroll_wanted(self) -> bool:
        # Events of this doorbell are recorded with pre-roll, or it is kept warm (recording
        # keep_warm, a rule's warm action, POST /api/streams/warm): the next clip must reach
        # back, so keyframes must not be sparse. Otherwise none are asked for unprompted.
        return self.wants_preroll or self.clock.now() < self._preroll_until

    def _arm_periodic(self) -> None:
        if self._periodic is not None:
            self._periodic.cancel()
            self._periodic = None
        if self._preroll_wanted():
            self._periodic = self.clock.call_later(self.keyframe_interval, self._periodic_due)

    def _periodic_due(self) -> None:
        self._periodic = None
        if self._preroll_wanted():
            self.request_keyframe()

    async def wait_keyframe(self, timeout: float) -> bool:
        """Start the stream if needed and wait until a keyframe is cached."""
        if not self._subs:
            self.keep_warm(max(timeout, 1.0), preroll=False)
        if not self._keyframe.is_set():
            # The timeout runs on the stream's clock, like the keep-warm it pairs with.
            keyframe = asyncio.ensure_future(self._keyframe.wait())
            expiry = asyncio.ensure_future(self.clock.sleep(timeout))
            try:
                await asyncio.wait((keyframe, expiry), return_when=asyncio.FIRST_COMPLETED)
            finally:
                keyframe.cancel()
                expiry.cancel()
        return self._keyframe.is_set()

    def on_change(self, listener: Callable[[Stream], None]) -> None:
        """Call ``listener`` when state or subscribers change."""
        self._listeners.append(listener)

    def stats(self) -> StreamStats:
        """A JSON-friendly summary for the API and the status page."""
        uptime = (
            self.clock.now() - self.started_at if self.started_at and self.state == "live" else 0
        )
        viewers: dict[str, int] = {}
        for sub in self._subs:
            viewers[sub.name] = viewers.get(sub.name, 0) + 1
        return {
            "state": self.state,
            "error": self.error,
            "codecs": dict(self.codecs),
            "viewers": viewers,
            "reconnects": self.reconnects,
            "uptime": round(uptime, 1),
            "bytes_in": self.bytes_in,
            "keyframes": self.keyframes.status,
            "keyframe_requests": self.keyframes.stats(),
            "buffer": {"bytes": self._ring.nbytes, "seconds": self._ring.seconds},
            "first_frame": self.first_frame.stats(),
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"stream {self.name}"
            )

    def _wanted(self) -> bool:
        return bool(self._subs) or self.clock.now() < self._warm_until

    def _cancel_idle(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def _schedule_idle(self) -> None:
        self._cancel_idle()
        if self._task is None or self._task.done():
            return
        delay = max(self.idle_timeout, self._warm_until - self.clock.now())
        self._idle_handle = self.clock.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_handle = None
        if self._wanted():
            self._schedule_idle()
            return
        _LOGGER.info("stream %s: idle, stopping the live session", self.name)
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Stop the session now and end every subscriber."""
        self._cancel_idle()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self._subs):
            sub.end()

    def _set_state(self, state: str, error: str | None = None) -> None:
        self.state, self.error = state, error
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            try:
                listener(self)
            except Exception:
                _LOGGER.exception("stream listener failed")

    async def _run(self) -> None:
        delay = self._backoff[0]
        down_since: float | None = None
        try:
            while True:
                self._set_state("starting" if down_since is None else "reconnecting", self.error)
                got_media = False
                self._call_started = self.clock.now()
                try:
                    session = await self._connect()
                    self._session = session
                    self.keyframes.reset()
                    self._timeline.new_session()
                    async for packet in self._pump(session):
                        if not got_media:
                            got_media = True
                            delay = self._backoff[0]
                            self.started_at = self.started_at or self.clock.now()
                            self._set_state("live")
                            if down_since is not None:
                                _LOGGER.warning(
                                    "stream %s: back after %.1f s",
                                    self.name,
                                    self.clock.now() - down_since,
                                )
                                down_since = None
                        self._publish(packet)
                    reason = "the session ended"
                except asyncio.CancelledError:
                    raise
                except AuthError as err:
                    reason = f"credentials refused: {err}"
                    delay = self._backoff[1]  # no point hammering; the user must fix it
                except (BridgeError, OSError) as err:
                    reason = str(err) or type(err).__name__
                finally:
                    if self._session is not None:
                        session, self._session = self._session, None
                        await _close_quietly(session)
                self.reconnects += 1
                self._keyframe.clear()
                if down_since is None:
                    down_since = self.clock.now()
                    _LOGGER.warning("stream %s: unavailable (%s); reconnecting", self.name, reason)
                else:
                    _LOGGER.debug("stream %s: still unavailable (%s)", self.name, reason)
                self._set_state(
                    "error" if not got_media and delay >= self._backoff[1] else "reconnecting",
                    reason,
                )
                await self.clock.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
        finally:
            self._ring.clear()
            self._keyframe.clear()
            self.keyframes.reset()
            if self._periodic is not None:
                self._periodic.cancel()
                self._periodic = None
            self.started_at = None
            self._call_started = None
            self._set_state("idle")

    async def _pump(self, session: LiveCall) -> AsyncIterator[MediaPacket]:
        """The session's packets, raising ``MediaStalled`` when none come for too long, and
        ``KeyframesNotAnswered`` when a consumer has waited ``media_timeout`` for a keyframe the
        doorbell keeps ignoring (a new session opens with one).

        A watchdog timer cancels this task on a stall. ``asyncio.wait_for`` around each packet
        would be simpler, but on Python 3.11 it can swallow a cancellation that races with a
        packet arriving, which leaves ``stop()`` waiting forever on a busy stream.
        """
        task = asyncio.current_task()
        assert task is not None
        clock = self.clock
        last = clock.now()
        flowing = False  # the first packet switches from media_timeout to silence_timeout
        stalled: BridgeError | None = None
        handle: Timer

        def watchdog() -> None:
            nonlocal handle, stalled
            now = clock.now()
            limit = self.silence_timeout if flowing else self.media_timeout
            if now - last >= limit:
                stalled = MediaStalled(f"no media for {limit:g} s")
            elif self.keyframes.unanswered_for() >= self.media_timeout and any(
                sub.waiting_for_keyframe for sub in self._subs
            ):
                stalled = KeyframesNotAnswered(
                    f"no keyframe for {self.media_timeout:g} s despite PLI and FIR"
                )
            if stalled is not None:
                task.cancel()
            else:
                # Wake when the silence would reach the limit (packets move ``last`` on), and
                # at least every quarter media_timeout for the keyframe check.
                wait = min(last + limit - now, self.media_timeout / 4)
                handle = clock.call_later(max(wait, 0.05), watchdog)

        handle = clock.call_later(self.media_timeout / 4, watchdog)
        try:
            async for packet in session.packets():
                last = clock.now()
                if not flowing:  # from now on silence counts: look again within its limit
                    flowing = True
                    handle.cancel()
                    handle = clock.call_later(self.silence_timeout, watchdog)
                yield packet
        except asyncio.CancelledError:
            if stalled is not None and task.uncancel() == 0:
                raise stalled from None
            raise
        finally:
            handle.cancel()

    def _publish(self, raw: MediaPacket) -> None:
        packet = self._timeline.map(raw)
        self.bytes_in += len(packet.data)
        self.codecs[packet.kind] = packet.codec
        if packet.kind == "video" and packet.keyframe:
            sps, pps = extract_sps_pps(packet.data)
            self.sps, self.pps = sps or self.sps, pps or self.pps
            self._keyframe.set()
            self.keyframes.keyframe()
            self._arm_periodic()
            if self._call_started is not None:  # the call's first picture: once per call
                self.first_frame.observe(self.clock.now() - self._call_started)
                self._call_started = None
        self._ring.add(packet)
        for sub in self._subs:
            sub.offer(packet)


async def _close_quietly(session: LiveCall) -> None:
    try:
        await session.close()
    except Exception:
        _LOGGER.exception("closing a live session failed")


class Hub:
    """Every doorbell's stream, found by stream name or device id."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK, **stream_options: Any) -> None:
        self.clock = clock
        self._options = stream_options
        self._streams: dict[str, Stream] = {}

    def add(self, device_id: str, name: str, connect: Connector) -> Stream:
        """Register a doorbell."""
        stream = Stream(device_id, name, connect, clock=self.clock, **self._options)
        self._streams[name] = stream
        return stream

    def get(self, name_or_id: str) -> Stream | None:
        """The stream with this name or device id."""
        found = self._streams.get(name_or_id)
        if found is None:
            found = next((s for s in self._streams.values() if s.device_id == name_or_id), None)
        return found

    @property
    def streams(self) -> list[Stream]:
        """All streams."""
        return list(self._streams.values())

    async def close(self) -> None:
        """Stop every stream; safe to call twice."""
        await asyncio.gather(*(s.stop() for s in self._streams.values()))
