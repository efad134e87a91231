"""The hub's building blocks: the continuous timeline, the GOP ring, and per-subscriber queues.

All three run on the per-packet path, so they are plain synchronous code with O(1) work per
packet and no copies of payload bytes (a packet is shared by every subscriber; nobody mutates it).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Callable, Iterator

from bridge.media.packet import MediaKind, MediaPacket

__all__ = ["GopRing", "StreamEnded", "Subscriber", "Timeline"]

_WRAP = 1 << 32  # RTP timestamps are 32-bit and wrap (every 13 h at 90 kHz)


class StreamEnded(Exception):
    """The stream stopped for good; no more packets will come to this subscriber."""


@dataclasses.dataclass
class _Track:
    session_base: int | None = None  # first unwrapped input pts of the current session
    offset: int = 0  # added to unwrapped input pts to get output pts
    last_in: int | None = None  # last raw 32-bit input pts, for unwrapping
    unwrapped: int = 0
    last_out: int | None = None
    last_arrival: float = 0.0
    step: int = 1  # smallest believable frame interval, in clock units


class Timeline:
    """Maps each session's RTP timestamps onto one timeline that never goes backwards.

    A reconnect brings a new peer whose RTP timestamps start anywhere. The first packet of each
    kind in a new session is placed after the last one sent, by the wall-clock time that passed,
    so audio and video keep their relative timing across the gap; that packet is marked as a
    discontinuity for muxers and players that care.
    """

    def __init__(self) -> None:
        self._tracks: dict[MediaKind, _Track] = {}
        self._new_session: set[MediaKind] = set()
        # Wall-clock origin shared by every kind, so audio that starts after video starts later.
        self._origin: float | None = None

    def new_session(self) -> None:
        """The next packets come from a fresh peer connection."""
        self._new_session = {"video", "audio"}

    def map(self, packet: MediaPacket) -> MediaPacket:
        """Return ``packet`` re-stamped on the continuous timeline."""
        track = self._tracks.setdefault(packet.kind, _Track())
        fresh = packet.kind in self._new_session or track.last_in is None
        if fresh:
            self._new_session.discard(packet.kind)
            track.last_in = packet.pts
            track.unwrapped = packet.pts
        else:
            assert track.last_in is not None
            delta = (packet.pts - track.last_in) % _WRAP
            if delta >= _WRAP // 2:  # a small step backwards, not a forward wrap
                delta -= _WRAP
            track.unwrapped += delta
            track.last_in = packet.pts
        discontinuity = False
        if fresh:
            if track.last_out is None:
                if self._origin is None:
                    self._origin = packet.arrival
                lead = round((packet.arrival - self._origin) * packet.clock_rate)
                track.offset = max(lead, 0) - track.unwrapped
            else:
                gap = round((packet.arrival - track.last_arrival) * packet.clock_rate)
                track.offset = track.last_out + max(gap, track.step) - track.unwrapped
                discontinuity = True
        out = track.unwrapped + track.offset
        if track.last_out is not None:
            if not discontinuity and out > track.last_out:
                track.step = out - track.last_out  # the usual frame interval, for the next gap
            # Each packet is a whole frame, so time must strictly advance, even if a peer's
            # clock stutters backwards.
            out = max(out, track.last_out + 1)
        track.last_out = out
        track.last_arrival = packet.arrival
        return dataclasses.replace(packet, pts=out, discontinuity=discontinuity)


class GopRing:
    """The last N seconds of packets, kept as whole GOPs so every read starts at a keyframe.

    Bounded by time and bytes whatever the keyframe spacing: a sender that keyframes only on
    request may send one GOP for a whole session. A GOP that starts before the window, or that
    would break the byte cap, is dropped whole even when it is the only one, because a GOP
    cut anywhere but at its keyframe cannot be decoded; until the next keyframe the ring is
    then empty, and whoever needs a picture asks for a keyframe (the hub does).
    """

    def __init__(self, seconds: float, max_bytes: int = 64 << 20) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._gops: deque[list[MediaPacket]] = deque()
        self._sizes: deque[int] = deque()  # payload bytes per GOP, so trimming is O(1)
        self._bytes = 0

    def add(self, packet: MediaPacket) -> None:
        """Append a packet; a video keyframe opens a new GOP. Packets before any GOP are dropped."""
        if packet.kind == "video" and packet.keyframe:
            self._gops.append([])
            self._sizes.append(0)
        if not self._gops:
            return
        size = len(packet.data)
        self._gops[-1].append(packet)
        self._sizes[-1] += size
        self._bytes += size
        self._trim(packet.arrival)

    def _trim(self, now: float) -> None:
        horizon = now - self.seconds
        while self._gops:
            # The oldest GOP goes once the next one alone reaches back far enough (or, for
            # the newest, once it begins before the window), or when the bytes overflow.
            reach = self._gops[1][0].arrival if len(self._gops) > 1 else self._gops[0][0].arrival
            if reach > horizon and self._bytes <= self.max_bytes:
                return
            self._gops.popleft()
            self._bytes -= self._sizes.popleft()

    def clear(self) -> None:
        """Forget everything (the stream stopped)."""
        self._gops.clear()
        self._sizes.clear()
        self._bytes = 0

    @property
    def last_gop(self) -> list[MediaPacket]:
        """The packets since the newest keyframe: what a new viewer needs for a picture at once."""
        return list(self._gops[-1]) if self._gops else []

    def last_keyframe_at(self) -> float | None:
        """Arrival time of the newest keyframe held, if any."""
        return self._gops[-1][0].arrival if self._gops else None

    def since(self, seconds: float, now: float) -> list[MediaPacket]:
        """Packets from the newest keyframe at least ``seconds`` old (or the oldest kept)."""
        target = now - seconds
        start = 0
        for i, gop in enumerate(self._gops):
            if gop[0].arrival <= target:
                start = i
        return [p for gop in list(self._gops)[start:] for p in gop]

    def __iter__(self) -> Iterator[MediaPacket]:
        return (p for gop in self._gops for p in gop)

    @property
    def nbytes(self) -> int:
        """Payload bytes held."""
        return self._bytes


class Subscriber:
    """One consumer's bounded queue. When it falls behind, it skips to the next keyframe.

    A slow consumer must never stall the others or grow memory; dropping whole GOPs is the only
    way to skip ahead without handing a decoder a frame whose reference is missing. After a
    skip, the consumer's next read calls ``on_need_keyframe``: with a sender that keyframes only
    on request, the next keyframe comes only if someone asks. It is the read, not the skip, that
    asks, so a consumer that is stuck for good does not make the doorbell send keyframe after
    keyframe.
    """

    def __init__(
        self,
        name: str,
        on_close: Callable[[Subscriber], None],
        max_packets: int = 600,
        max_bytes: int = 16 << 20,
        on_need_keyframe: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.max_packets = max_packets
        self.max_bytes = max_bytes
        self.dropped = 0
        self.delivered = 0
        self._queue: deque[MediaPacket] = deque()
        self._bytes = 0
        self._wait_keyframe = True
        self._event = asyncio.Event()
        self._ended = False
        self._on_close = on_close
        self._on_need_keyframe = on_need_keyframe
        self._skipped = False  # skipped ahead; the next read asks for a keyframe
        self.closed = False

    def offer(self, packet: MediaPacket) -> None:
        """Queue a packet (called by the stream, never blocks)."""
        is_key = packet.kind == "video" and packet.keyframe
        if self._wait_keyframe and not is_key:
            self.dropped += 1
            return
        if len(self._queue) >= self.max_packets or self._bytes + len(packet.data) > self.max_bytes:
            self.dropped += len(self._queue)
            self._queue.clear()
            self._bytes = 0
            self._wait_keyframe = True
            if not is_key:
                self.dropped += 1
                self._skipped = True
                return
        self._wait_keyframe = False
        self._queue.append(packet)
        self._bytes += len(packet.data)
        self._event.set()

    def end(self) -> None:
        """No more packets will come."""
        self._ended = True
        self._event.set()

    async def get(self) -> MediaPacket:
        """The next packet; raises ``StreamEnded`` once the stream has stopped and the queue is empty."""
        while not self._queue:
            if self._ended or self.closed:
                raise StreamEnded(self.name)
            self._ask_after_skip()
            self._event.clear()
            await self._event.wait()
        packet = self._queue.popleft()
        self._bytes -= len(packet.data)
        self.delivered += 1
        return packet

    def get_nowait(self) -> MediaPacket | None:
        """The next packet if one is queued."""
        if not self._queue:
            self._ask_after_skip()
            return None
        packet = self._queue.popleft()
        self._bytes -= len(packet.data)
        self.delivered += 1
        return packet

    def _ask_after_skip(self) -> None:
        if self._skipped and self._wait_keyframe:
            self._skipped = False
            self._on_need_keyframe()

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> MediaPacket:
        try:
            return await self.get()
        except StreamEnded:
            raise StopAsyncIteration from None

    @property
    def waiting_for_keyframe(self) -> bool:
        """True until the subscriber's next keyframe arrives."""
        return self._wait_keyframe

    @property
    def queued(self) -> int:
        """Packets waiting."""
        return len(self._queue)

    def close(self) -> None:
        """Leave the stream; safe to call twice."""
        if not self.closed:
            self.closed = True
            self._event.set()
            self._on_close(self)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
