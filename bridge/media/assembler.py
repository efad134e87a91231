"""Turn depayloaded RTP packets into whole frames, without decoding anything.

aiortc's own JitterBuffer hands a frame to its decoder only when the *next* frame's first
packet arrives (one frame interval of latency, 67 ms at 15 fps), and it leans on the decoder
failing to notice loss. We never decode, so this module does both jobs itself:

* release a video frame as soon as the packet carrying the RTP marker bit completes it (every
  sequence number from the frame's first packet to the marker is present);
* hold later frames while a gap is open so a NACK/RTX retransmission can fill it, and once
  ``max_wait`` passes declare the frame lost, ask for a keyframe (PLI) and drop every frame
  until a complete keyframe arrives, so consumers never see a broken picture.

Measured with the simulated doorbell in another process (720p15, 2 Mbit/s, loopback), time
from a frame's last packet to the consumer callback: median 66 ms releasing on the next frame
as aiortc does, 0.3-0.5 ms (p95 under 2.2 ms) releasing on the marker.

It is pure: no aiortc import, an injectable clock, plain values in and out. aiortc_patch.py
adapts it to the receiver's jitter-buffer slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .packet import NAL_IDR, NAL_PPS, NAL_SPS, h264_nal_types

__all__ = ["AssembledFrame", "AssemblerStats", "AudioAssembler", "VideoAssembler"]

logger = logging.getLogger(__name__)

_START_CODE = b"\x00\x00\x00\x01"
# Start the extended sequence space well above zero so packets reordered before the first one
# still get positive numbers.
_SEQ_BASE = 1 << 20


@dataclass(slots=True)
class AssembledFrame:
    """A complete frame: Annex-B AU for H.264, one encoded frame for audio."""

    data: bytes
    pts: int  # RTP timestamp unwrapped past 2**32 and relative to the first frame
    keyframe: bool
    arrival: float  # clock() when the last packet of the frame arrived


@dataclass(slots=True)
class AssemblerStats:
    """Counters a test or the hub can read; never reset."""

    frames_delivered: int = 0
    frames_dropped: int = 0  # complete frames discarded while waiting for a keyframe
    frames_lost: int = 0  # incomplete frames given up on
    keyframe_requests: int = 0  # PLIs asked for


@dataclass(slots=True)
class _Packet:
    timestamp: int
    marker: bool
    data: bytes
    arrival: float


@dataclass(slots=True)
class _Unwrapper:
    """Extends a wrapping RTP counter (16-bit sequence, 32-bit timestamp) to an int."""

    bits: int
    base: int = 0
    _last: int | None = field(default=None)

    def unwrap(self, value: int) -> int:
        if self._last is None:
            self._last = self.base + value
            return self._last
        modulus = 1 << self.bits
        half = modulus >> 1
        delta = ((value - self._last) + half) % modulus - half
        extended = self._last + delta
        # Only move forward: a reordered packet must not drag the reference back.
        self._last = max(self._last, extended)
        return extended


class VideoAssembler:
    """Reassembles H.264 access units from depayloaded packets (see the module docstring)."""

    def __init__(
        self,
        *,
        release_on_marker: bool = True,
        max_wait: float = 0.25,
        capacity: int = 1024,
        pli_min_interval: float = 0.5,
        pli_repeat_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = AssemblerStats()
        self._release_on_marker = release_on_marker
        # How long a gap may stay open for NACK/RTX before the frame is written off. Large
        # enough for one retransmission round trip through TURN, small enough that a stall is
        # brief when the camera does not answer NACKs.
        self._max_wait = max_wait
        self._capacity = capacity
        self._pli_min_interval = pli_min_interval
        self._pli_repeat_interval = pli_repeat_interval
        self._clock = clock
        self._seq = _Unwrapper(bits=16, base=_SEQ_BASE)
        self._ts = _Unwrapper(bits=32)
        self._ts_origin: int | None = None
        self._packets: dict[int, _Packet] = {}
        self._highest: int | None = None
        self._next: int | None = None  # first sequence number of the next frame, when known
        self._floor = 0  # anything below is late: already released or written off
        self._gap_since: float | None = None
        self._need_keyframe = True
        self._have_parameter_sets = False
        self._last_pli = float("-inf")
        self._want_pli = False

    @property
    def waiting_for_keyframe(self) -> bool:
        """True until a complete keyframe has been delivered, and again after a loss."""
        return self._need_keyframe

    def push(
        self, seq: int, timestamp: int, marker: bool, data: bytes
    ) -> tuple[bool, list[AssembledFrame]]:
        """Add one depayloaded packet; return (send a PLI now, frames ready for consumers)."""
        now = self._clock()
        ext = self._seq.unwrap(seq)
        if ext < self._floor or ext in self._packets:
            return self._take_pli(now), []  # late retransmission or duplicate
        self._packets[ext] = _Packet(self._ts.unwrap(timestamp), marker, data, now)
        if self._highest is None or ext > self._highest:
            self._highest = ext
        if len(self._packets) > self._capacity:
            # Unsynchronised for far too long (no frame boundary found): bound the memory.
            self._discard_below(self._highest - self._capacity // 2)

        frames: list[AssembledFrame] = []
        while True:
            self._release_ready(frames, now)
            if self._gap_since is None:
                break
            if self._gap_expired(now):
                self._write_off_gap()
                continue
            keyframe_at = self._buffered_keyframe()
            if keyframe_at is None:
                break
            # A complete keyframe is already here: waiting for a retransmission of something
            # older only adds latency, since the keyframe resets the decoder anyway.
            self.stats.frames_lost += 1
            self._discard_below(keyframe_at)
            self._next = keyframe_at
            self._gap_since = None
        return self._take_pli(now), frames

    # -- internals -------------------------------------------------------------------------

    def _release_ready(self, out: list[AssembledFrame], now: float) -> None:
        while True:
            start, confirmed = self._frame_start()
            if start is None:
                return
            end = self._frame_end(start, now)
            if end is None:
                return
            packets = [self._packets.pop(s) for s in range(start, end + 1)]
            self._next = self._floor = end + 1
            self._gap_since = None
            self._deliver_or_drop(packets, confirmed, out, now)

    def _frame_start(self) -> tuple[int | None, bool]:
        """Where the next frame starts, and whether that boundary is certain."""
        if self._next is not None:
            return self._next, True
        # Not synchronised (start of stream, or after a loss): find the first packet that
        # certainly starts a frame (its predecessor ended one), or that at least starts a NAL
        # unit with nothing before it. An uncertain start is only trusted for a keyframe that
        # carries its own SPS/PPS (checked in _deliver_or_drop).
        for s in sorted(self._packets):
            pkt = self._packets[s]
            prev = self._packets.get(s - 1)
            if prev is not None:
                if prev.marker or prev.timestamp != pkt.timestamp:
                    self._discard_below(s)
                    return s, True
            elif pkt.data.startswith(_START_CODE):
                self._discard_below(s)
                return s, False
        return None, False

    def _frame_end(self, start: int, now: float) -> int | None:
        """Last sequence number of the frame beginning at ``start``, or None if incomplete."""
        first = self._packets.get(start)
        s = start
        while True:
            pkt = self._packets.get(s)
            if pkt is None or first is None:
                self._note_gap_if_behind(s, now)
                return None
            if pkt.timestamp != first.timestamp:
                # The sender never set a marker on the previous packet; the timestamp change
                # is the boundary. This is also aiortc's only rule (release_on_marker=False).
                return s - 1
            if pkt.marker and self._release_on_marker:
                return s
            s += 1

    def _buffered_keyframe(self) -> int | None:
        """First sequence number of a complete, usable keyframe stored past the open gap."""
        origin = self._next if self._next is not None else self._floor
        for s in sorted(k for k in self._packets if k > origin):
            pkt = self._packets[s]
            prev = self._packets.get(s - 1)
            if prev is not None:
                if not (prev.marker or prev.timestamp != pkt.timestamp):
                    continue
                confirmed = True
            elif pkt.data.startswith(_START_CODE):
                confirmed = False
            else:
                continue
            chunks = []
            end = s
            while True:
                cur = self._packets.get(end)
                if cur is None or cur.timestamp != pkt.timestamp:
                    break
                chunks.append(cur.data)
                if cur.marker and self._release_on_marker:
                    break
                end += 1
            if self._packets.get(end) is None:
                continue  # incomplete
            nal_types = h264_nal_types(b"".join(chunks))
            in_band = NAL_SPS in nal_types and NAL_PPS in nal_types
            if NAL_IDR in nal_types and (in_band or (confirmed and self._have_parameter_sets)):
                return s
        return None

    def _note_gap_if_behind(self, missing: int, now: float) -> None:
        # A missing packet is a gap only once something newer has arrived; otherwise we are
        # simply waiting for the rest of the frame.
        if self._highest is not None and self._highest > missing and self._gap_since is None:
            self._gap_since = now

    def _gap_expired(self, now: float) -> bool:
        if self._gap_since is None:
            return False
        if now - self._gap_since >= self._max_wait:
            return True
        span = (self._highest or 0) - (self._next if self._next is not None else self._floor)
        return span >= self._capacity

    def _write_off_gap(self) -> None:
        """Give up on the incomplete frame: drop it, resynchronise, want a keyframe."""
        start = self._next if self._next is not None else min(self._packets, default=self._floor)
        missing = start
        while missing in self._packets:
            missing += 1
        self.stats.frames_lost += 1
        logger.debug("frame lost at seq %d, waiting for a keyframe", missing & 0xFFFF)
        self._discard_below(missing + 1)
        self._floor = missing + 1
        self._next = None
        self._gap_since = None
        self._need_keyframe = True
        self._want_pli = True

    def _discard_below(self, seq: int) -> None:
        for s in [s for s in self._packets if s < seq]:
            del self._packets[s]
        self._floor = max(self._floor, seq)

    def _deliver_or_drop(
        self, packets: list[_Packet], confirmed: bool, out: list[AssembledFrame], now: float
    ) -> None:
        data = b"".join(p.data for p in packets)
        if not data:
            return  # padding-only packets (bandwidth probes) carry no picture
        nal_types = h264_nal_types(data)
        keyframe = NAL_IDR in nal_types
        in_band = NAL_SPS in nal_types and NAL_PPS in nal_types
        if in_band:
            self._have_parameter_sets = True
        if self._need_keyframe:
            # A keyframe is only a safe restart point when a decoder can use it: complete from
            # a certain boundary with known parameter sets, or carrying its own SPS/PPS.
            usable = keyframe and (in_band or (confirmed and self._have_parameter_sets))
            if not usable:
                self.stats.frames_dropped += 1
                if now - self._last_pli >= self._pli_repeat_interval:
                    self._want_pli = True
                return
            self._need_keyframe = False
        timestamp = packets[0].timestamp
        if self._ts_origin is None:
            self._ts_origin = timestamp
        self.stats.frames_delivered += 1
        out.append(
            AssembledFrame(
                data=data,
                pts=timestamp - self._ts_origin,
                keyframe=keyframe,
                arrival=max(p.arrival for p in packets),
            )
        )

    def _take_pli(self, now: float) -> bool:
        if self._want_pli and now - self._last_pli >= self._pli_min_interval:
            self._want_pli = False
            self._last_pli = now
            self.stats.keyframe_requests += 1
            return True
        return False


class AudioAssembler:
    """Audio needs no reassembly: one RTP packet carries one opus or G.711 frame.

    aiortc prefetches 4 audio packets (80 ms) before its decoder sees them; we release each
    packet at once and drop late or duplicate ones, leaving smoothing to the consumers, which
    work from pts anyway.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stats = AssemblerStats()
        self._clock = clock
        self._seq = _Unwrapper(bits=16, base=_SEQ_BASE)
        self._ts = _Unwrapper(bits=32)
        self._ts_origin: int | None = None
        self._last: int | None = None

    def push(
        self, seq: int, timestamp: int, marker: bool, data: bytes
    ) -> tuple[bool, list[AssembledFrame]]:
        """Add one packet; return (False, [the frame]) or (False, []) when late."""
        ext = self._seq.unwrap(seq)
        if self._last is not None and ext <= self._last:
            self.stats.frames_dropped += 1
            return False, []
        self._last = ext
        ts = self._ts.unwrap(timestamp)
        if self._ts_origin is None:
            self._ts_origin = ts
        self.stats.frames_delivered += 1
        frame = AssembledFrame(
            data=data, pts=ts - self._ts_origin, keyframe=True, arrival=self._clock()
        )
        return False, [frame]
