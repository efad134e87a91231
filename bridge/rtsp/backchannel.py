"""The ONVIF audio backchannel: a client that asks for it sends RTP audio that goes to the doorbell.

A client opts in with ``Require: www.onvif.org/ver20/backchannel`` on DESCRIBE (ONVIF Streaming
Specification, "Back channel connection"); only then does the SDP get one more audio section,
marked ``a=sendonly`` from the server's point of view, that the client sets up like any track and
then sends RTP on (interleaved on the RTSP connection, or UDP to the track's server port).
Without the header nothing here runs, so what NVRs see does not change.

Packets are parsed, decoded with PyAV and handed to a talk sink (the doorbell's talk session),
which is opened on the first packet and closed after a short silence, on TEARDOWN, or when the
client leaves. Holding it only while audio flows matters: the doorbell takes one talker at a time,
and a client that sets up the backchannel "just in case" must not lock everyone else out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import av

__all__ = [
    "BACKCHANNEL_FORMATS",
    "BACKCHANNEL_TAG",
    "MAX_PACKET",
    "Backchannel",
    "RtpPacket",
    "TalkOpener",
    "TalkSink",
    "aac_access_units",
    "parse_rtp",
    "wants_backchannel",
]

_LOGGER = logging.getLogger(__name__)

BACKCHANNEL_TAG = "www.onvif.org/ver20/backchannel"
# RTP packets larger than this are not talk audio (20 ms of G.711 is 172 bytes with its header,
# an AAC frame at talk bitrates a few hundred): dropped before anything looks inside.
MAX_PACKET = 4096
_AAC_PT = 98
_AAC_RATE = 16000
_AAC_CONFIG = bytes.fromhex("1408")  # AudioSpecificConfig: AAC-LC, 16 kHz, mono
# (payload type, rtpmap encoding, clock rate, channels, fmtp) in the order offered: G.711 first,
# which every ONVIF client sends; AAC as go2rtc offers it.
BACKCHANNEL_FORMATS: tuple[tuple[int, str, int, int, str | None], ...] = (
    (0, "PCMU", 8000, 1, None),
    (8, "PCMA", 8000, 1, None),
    (
        _AAC_PT,
        "MPEG4-GENERIC",
        _AAC_RATE,
        1,
        "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;"
        f"indexdeltalength=3;config={_AAC_CONFIG.hex()}",
    ),
)
_IDLE = 2.0  # seconds without audio after which the talk session is given back
_RETRY = 2.0  # seconds between attempts to open a talk session that was refused
_QUEUE = 100  # decoded frames waiting for the talk session: ~2 s of 20 ms frames
_RTP = struct.Struct("!BBHII")


class TalkSink(Protocol):
    """Where decoded audio goes: the doorbell's talk session."""

    async def write(self, frame: av.AudioFrame) -> None:
        """Send one frame to the doorbell."""

    async def close(self) -> None:
        """Give the doorbell back to other talkers."""


# Opens a talk session on the named stream; raises (busy, offline, unsupported) with a reason.
TalkOpener = Callable[[str], Awaitable[TalkSink]]


def wants_backchannel(require: str | None) -> bool:
    """Whether a ``Require`` header asks for the ONVIF backchannel."""
    return any(t.strip().lower() == BACKCHANNEL_TAG for t in (require or "").split(","))


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """The parts of an RTP packet the backchannel uses."""

    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse an RTP packet (RFC 3550); ValueError for anything that is not one."""
    if len(data) < _RTP.size:
        raise ValueError("shorter than an RTP header")
    first, second, seq, timestamp, ssrc = _RTP.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("not RTP version 2")
    offset = _RTP.size + 4 * (first & 0x0F)  # CSRC list
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if len(data) < offset + 4:
            raise ValueError("truncated header extension")
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if first & 0x20:  # padding: the last byte counts the padding bytes, itself included
        padding = data[-1]
        if padding == 0:
            raise ValueError("zero padding length")
        end -= padding
    if offset > end:
        raise ValueError("headers longer than the packet")
    if 200 <= second <= 204:  # RTCP's SR, RR, SDES, BYE, APP: what a muxed RTCP packet looks like
        raise ValueError("an RTCP packet on the RTP channel")
    payload_type = second & 0x7F
    return RtpPacket(payload_type, bool(second & 0x80), seq, timestamp, ssrc, data[offset:end])


def aac_access_units(payload: bytes) -> list[bytes]:
    """The AAC frames in an RFC 3640 AAC-hbr payload (13-bit sizes, 3-bit indices).

    ValueError when the AU headers do not add up to the payload.
    """
    if len(payload) < 2:
        raise ValueError("no AU header section")
    header_bits = int.from_bytes(payload[:2], "big")
    if header_bits == 0 or header_bits % 16:
        raise ValueError("AU headers are not 16 bits each")
    header_bytes = header_bits // 8
    start = 2 + header_bytes
    if len(payload) < start:
        raise ValueError("truncated AU headers")
    units: list[bytes] = []
    offset = start
    for i in range(2, start, 2):
        size = int.from_bytes(payload[i : i + 2], "big") >> 3
        if size == 0 or offset + size > len(payload):
            raise ValueError("AU size beyond the payload")
        units.append(payload[offset : offset + size])
        offset += size
    return units


class _Decoder:
    """One payload type's PyAV decoder."""

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        if payload_type == _AAC_PT:
            self._ctx = av.CodecContext.create("aac", "r")
            self._ctx.extradata = _AAC_CONFIG
            rate = _AAC_RATE
        else:
            self._ctx = av.CodecContext.create(
                "pcm_mulaw" if payload_type == 0 else "pcm_alaw", "r"
            )
            rate = 8000
        assert isinstance(self._ctx, av.AudioCodecContext)
        self._ctx.sample_rate = rate
        self._ctx.layout = "mono"

    def decode(self, payload: bytes) -> list[av.AudioFrame]:
        """Decoded frames; ValueError (or av.FFmpegError) for a payload that does not decode."""
        units = aac_access_units(payload) if self.payload_type == _AAC_PT else [payload]
        frames: list[av.AudioFrame] = []
        for unit in units:
            if not unit:
                continue
            for frame in self._ctx.decode(av.Packet(unit)):
                assert isinstance(frame, av.AudioFrame)
                frames.append(frame)
        return frames


class Backchannel:
    """One client's backchannel track: RTP in, decoded frames out to a talk session."""

    def __init__(self, stream_name: str, open_talk: TalkOpener, label: str) -> None:
        self.stream_name = stream_name
        self.packets = 0  # RTP packets accepted
        self.dropped = 0  # packets refused (junk, wrong payload type, too big, undecodable)
        self.frames = 0  # frames written to the talk session
        self._open_talk = open_talk
        self._label = label
        self._decoder: _Decoder | None = None
        self._queue: asyncio.Queue[av.AudioFrame] = asyncio.Queue(_QUEUE)
        self._task: asyncio.Task[None] | None = None
        self._sink: TalkSink | None = None
        self._retry_at = 0.0
        self._refusal: str | None = None  # the last reason a talk session was refused (logged once)
        self._closed = False

    @property
    def talking(self) -> bool:
        """Whether a talk session is open."""
        return self._sink is not None

    def receive(self, data: bytes) -> None:
        """Take one RTP packet from the client; anything that is not usable audio is dropped."""
        if self._closed:
            return
        try:
            frames = self._decode(data)
        except (ValueError, av.FFmpegError) as err:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 1000 == 0:
                _LOGGER.info("%s: backchannel packet dropped (%s)", self._label, err)
            return
        self.packets += 1
        for frame in frames:
            if self._queue.full():
                self._queue.get_nowait()  # the talk session is slow to open: keep the newest
            self._queue.put_nowait(frame)
        if frames and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self._label} backchannel"
            )

    def _decode(self, data: bytes) -> list[av.AudioFrame]:
        if len(data) > MAX_PACKET:
            raise ValueError(f"packet of {len(data)} bytes (the limit is {MAX_PACKET})")
        packet = parse_rtp(data)
        if packet.payload_type not in (fmt[0] for fmt in BACKCHANNEL_FORMATS):
            raise ValueError(f"payload type {packet.payload_type} was not offered")
        decoder = self._decoder
        if decoder is None or decoder.payload_type != packet.payload_type:
            decoder = self._decoder = _Decoder(packet.payload_type)
        return decoder.decode(packet.payload)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(self._queue.get(), _IDLE)
                except TimeoutError:
                    return  # the client stopped talking: give the doorbell back
                sink = self._sink or await self._open()
                if sink is None:
                    continue
                try:
                    await sink.write(frame)
                except Exception as err:
                    _LOGGER.info("%s: talk session ended (%s)", self._label, err)
                    await self._release()
                    self._retry_at = time.monotonic() + _RETRY
                else:
                    self.frames += 1
        finally:
            await self._release()

    async def _open(self) -> TalkSink | None:
        if time.monotonic() < self._retry_at:
            return None
        try:
            self._sink = await self._open_talk(self.stream_name)
        except Exception as err:
            self._retry_at = time.monotonic() + _RETRY
            reason = str(err) or type(err).__name__
            if reason != self._refusal:
                _LOGGER.info("%s: cannot talk to %s: %s", self._label, self.stream_name, reason)
                self._refusal = reason
            return None
        self._refusal = None
        _LOGGER.info("%s: talking to %s over the RTSP backchannel", self._label, self.stream_name)
        return self._sink

    async def _release(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            try:
                await sink.close()
            except Exception:
                _LOGGER.exception("%s: closing the talk session failed", self._label)

    async def close(self) -> None:
        """Stop taking audio and close the talk session; safe to call twice."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._release()
