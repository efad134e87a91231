"""How the simulated doorbell judges RTCP feedback: the unkind rules of a libwebrtc sender.

A real doorbell running libwebrtc (the KVS C SDK's peers behave alike) sends one keyframe at
the start and afterwards only when asked, and it is picky about being asked:

* **PLI** counts only if its media SSRC is the video stream's primary SSRC
  (``RTCPReceiver::HandlePli``: ``main_ssrc == pli.media_ssrc``). A PLI naming the RTX SSRC,
  the audio SSRC or 0 does nothing.
* **FIR** (RFC 5104) counts only for an FCI entry naming the video SSRC whose command sequence
  number differs from the last one seen from that requester: a repeated number is a
  retransmission of the same request (``RTCPReceiver::HandleFir`` keys it by sender SSRC).
* Whatever passes is still **throttled**: ``EncoderRtcpFeedback`` ignores a request arriving
  within 300 ms (``kMinKeyframeSendIntervalMs``) of the last one it acted on.

:class:`KeyframeGate` is that logic without any I/O, so the rules can be reasoned about and
tested apart from the peer; the doorbell counts its verdicts.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
)

__all__ = ["MIN_KEYFRAME_INTERVAL", "FeedbackKind", "KeyframeGate", "Outcome", "Verdict", "fir_fci"]

MIN_KEYFRAME_INTERVAL = 0.3  # libwebrtc's kMinKeyframeSendIntervalMs, in seconds

FeedbackKind = Literal["pli", "fir", "nack", "other"]
Outcome = Literal["keyframe", "throttled", "wrong_ssrc", "repeated_fir", "none"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one feedback packet was (``kind``) and what the sender does about it."""

    kind: FeedbackKind
    outcome: Outcome = "none"
    nacked: int = 0  # sequence numbers a NACK asks for


def fir_fci(entries: list[tuple[int, int]]) -> bytes:
    """FIR FCI for ``[(ssrc, seq_nr), ...]``: 8 bytes each (RFC 5104 section 4.3.1.1)."""
    return b"".join(struct.pack("!LB3x", ssrc, seq & 0xFF) for ssrc, seq in entries)


def _fir_entries(fci: bytes) -> list[tuple[int, int]]:
    usable = len(fci) - len(fci) % 8  # a truncated trailing entry is ignored, like libwebrtc
    return [struct.unpack("!LB3x", fci[i : i + 8]) for i in range(0, usable, 8)]


class KeyframeGate:
    """Judges PLI/FIR/NACK for one video sender the way libwebrtc's sender side does."""

    def __init__(
        self,
        video_ssrc: int,
        *,
        min_interval: float = MIN_KEYFRAME_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.video_ssrc = video_ssrc
        self._min_interval = min_interval
        self._clock = clock
        self._last_acted: float | None = None
        self._last_fir_seq: dict[int, int] = {}  # requester SSRC -> last FIR seq nr

    def judge(self, packet: RtcpPsfbPacket | RtcpRtpfbPacket) -> Verdict:
        """Classify one feedback packet and decide whether it earns a keyframe."""
        if isinstance(packet, RtcpRtpfbPacket):
            if packet.fmt == RTCP_RTPFB_NACK:
                return Verdict("nack", nacked=len(packet.lost))
            return Verdict("other")
        if packet.fmt == RTCP_PSFB_PLI:
            if packet.media_ssrc != self.video_ssrc:
                return Verdict("pli", "wrong_ssrc")
            return Verdict("pli", self._throttle())
        if packet.fmt == RTCP_PSFB_FIR:
            return Verdict("fir", self._judge_fir(packet))
        return Verdict("other")  # REMB and friends

    def _judge_fir(self, packet: RtcpPsfbPacket) -> Outcome:
        seqs = [seq for ssrc, seq in _fir_entries(packet.fci) if ssrc == self.video_ssrc]
        if not seqs:
            return "wrong_ssrc"
        seq = seqs[-1]
        if self._last_fir_seq.get(packet.ssrc) == seq:
            return "repeated_fir"
        # Remembered even if the throttle then drops it: the receiver side has seen this
        # request, so its retransmission must not count as new later.
        self._last_fir_seq[packet.ssrc] = seq
        return self._throttle()

    def _throttle(self) -> Outcome:
        now = self._clock()
        if self._last_acted is not None and now - self._last_acted < self._min_interval:
            return "throttled"
        self._last_acted = now
        return "keyframe"
