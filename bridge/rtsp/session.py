"""One RTSP session: its tracks, its transport (TCP interleaved or UDP), and the task that plays it.

Timestamps: a client's RTP timestamp is a random per-track base plus the hub's pts, modulo 2^32.
The hub's timeline never goes backwards, across source reconnects too, so neither does RTP time.
Sender reports map RTP time to wall-clock (NTP) time from the packets' arrival times, which is
what lets a client line audio up with video.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from bridge.media.buffers import StreamEnded, Subscriber
from bridge.media.hub import Stream
from bridge.media.packet import MediaPacket
from bridge.rtsp.backchannel import Backchannel, TalkOpener
from bridge.rtsp.feed import StreamFeed
from bridge.rtsp.message import Transport
from bridge.rtsp.rtp import rtp_header, sender_report
from bridge.rtsp.sdp import TrackInfo

__all__ = ["RtspSession", "RtspSessionStats"]

_LOGGER = logging.getLogger(__name__)

_SR_INTERVAL = 2.0  # seconds between sender reports per track
_DRIFT = 5e-4  # how fast the wall-clock mapping may move (s/s): a 500 ppm source clock
_DRAIN_TIMEOUT = 20.0  # a TCP client that reads nothing for this long is gone
_UDP_BURST = 64 << 10  # bytes sent in one go before yielding, so a GOP replay does not flood


class _Inbound(asyncio.DatagramProtocol):
    """Receives the client's RTCP (and NAT-punching packets): proof that it is still there.

    On a backchannel track's RTP port it also receives the client's audio, which is taken only
    from the client's own address (anyone else could otherwise talk through the doorbell).
    """

    def __init__(
        self,
        touch: Callable[[], None],
        on_data: Callable[[bytes], None] | None = None,
        peer: str | None = None,
    ) -> None:
        self._touch = touch
        self._on_data = on_data
        self._peer = peer

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._peer is not None and addr[0] != self._peer:
            return
        self._touch()
        if self._on_data is not None:
            self._on_data(data)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable while the client opens its sockets: nothing to do


class _WallClock:
    """Maps media time on the hub's timeline (seconds) to monotonic time, for sender reports.

    One mapping serves every track of a session: the hub already puts audio and video on one
    timeline, so one mapping keeps them exactly as much in sync as the hub has them. The
    mapping comes from arrival times: the least-delayed packet (the lowest arrival minus media
    time) is the best estimate. It is never allowed to jump: a client computes presentation time
    from the latest report, so a jump back would make its timestamps go backwards.
    """

    def __init__(self) -> None:
        self.offset: float | None = None
        self._window = math.inf  # lowest sample since the last report
        self._updated = 0.0

    def observe(self, packet: MediaPacket) -> None:
        """Take one packet's arrival into account."""
        self._window = min(self._window, packet.arrival - packet.pts / packet.clock_rate)

    def media_time(self, now: float) -> float:
        """The media time (seconds) that corresponds to monotonic time ``now``."""
        if self.offset is None:
            self.offset = self._window if self._window < math.inf else now
        elif self._window < math.inf:
            # Slew, at most as fast as a source clock may drift, towards the recent minimum.
            limit = _DRIFT * max(now - self._updated, 0.0)
            self.offset += max(-limit, min(limit, self._window - self.offset))
        self._updated = now
        self._window = math.inf
        return now - self.offset


@dataclass
class _Track:
    index: int
    info: TrackInfo
    ssrc: int
    seq: int
    base: int  # random RTP timestamp origin for this client
    channel: int = 0  # interleaved RTP channel (RTCP is channel + 1)
    rtp: asyncio.DatagramTransport | None = None
    rtcp: asyncio.DatagramTransport | None = None
    client: tuple[str, int, int] | None = None  # UDP host, RTP port, RTCP port
    server_port: int = 0
    packets: int = 0
    octets: int = 0
    backchannel: Backchannel | None = None  # the client sends on this track; we send nothing


async def _bind_pair(
    host: str,
    touch: Callable[[], None],
    on_data: Callable[[bytes], None] | None = None,
    peer: str | None = None,
) -> tuple[asyncio.DatagramTransport, ...]:
    """An even RTP port and the odd RTCP port above it, both on ``host``."""
    loop = asyncio.get_running_loop()
    for _ in range(32):
        rtp, _ = await loop.create_datagram_endpoint(
            lambda: _Inbound(touch, on_data, peer), local_addr=(host, 0)
        )
        port = rtp.get_extra_info("sockname")[1]
        if port % 2 == 0:
            try:
                rtcp, _ = await loop.create_datagram_endpoint(
                    lambda: _Inbound(touch), local_addr=(host, port + 1)
                )
            except OSError:
                pass
            else:
                return rtp, rtcp
        rtp.close()
    raise OSError("no free UDP port pair")


class RtspSessionStats(TypedDict):
    """One session: its stream, transport, whether it plays, and packets sent."""

    stream: str
    transport: Literal["tcp", "udp"]
    playing: bool
    packets: int


class RtspSession:
    """A client's tracks and, once playing, the task that sends them."""

    def __init__(
        self,
        stream: Stream,
        feed: StreamFeed,
        tracks: list[TrackInfo],
        writer: asyncio.StreamWriter,
        on_end: Callable[[RtspSession], None],
        talk: TalkOpener | None = None,
    ) -> None:
        self.id = secrets.token_hex(8)
        self.stream = stream
        self.feed = feed
        self.available = tracks
        self.tcp: bool | None = None
        self.tracks: dict[int, _Track] = {}
        self.last_activity = time.monotonic()
        self._writer = writer
        self._on_end = on_end
        self._cname = f"skybell-bridge-{self.id}".encode()
        self._sub: Subscriber | None = None
        self._first: MediaPacket | None = None
        self._task: asyncio.Task[None] | None = None
        self._out: list[bytes] = []
        self._burst = 0
        self._clock = _WallClock()
        self._next_sr = 0.0
        self._by_kind: dict[str, _Track] = {}
        self._talk = talk
        self._closed = False

    @property
    def playing(self) -> bool:
        """Whether media is flowing to the client."""
        return self._task is not None and not self._task.done()

    def touch(self) -> None:
        """The client showed signs of life (a request or RTCP)."""
        self.last_activity = time.monotonic()

    async def add_track(self, index: int, transport: Transport, local: str, peer: str) -> str:
        """Set up track ``index``; returns the Transport header for the reply."""
        info = self.available[index]
        old = self.tracks.pop(index, None)
        if old is not None:
            await _close_track(old)
        track = _Track(
            index,
            info,
            ssrc=secrets.randbits(32),
            seq=secrets.randbits(16),
            base=secrets.randbits(32),
        )
        if info.backchannel and self._talk is not None:
            label = f"rtsp {peer} session {self.id}"
            track.backchannel = Backchannel(self.stream.name, self._talk, label)
        receive = track.backchannel.receive if track.backchannel is not None else None
        ssrc = f"ssrc={track.ssrc:08X}"
        if transport.tcp:
            self.tcp = True
            track.channel = transport.channels[0] if transport.channels else 2 * index
            self.tracks[index] = track
            return f"RTP/AVP/TCP;unicast;interleaved={track.channel}-{track.channel + 1};{ssrc}"
        self.tcp = False
        assert transport.client_ports is not None
        # Send from ports on the address the client reached us at, and only to the client's
        # own address: a "destination=" parameter would let anyone aim a stream at a third party.
        # Only the backchannel filters by address: it is audio for the doorbell, while RTCP from
        # anywhere has always counted as a keepalive.
        track.rtp, track.rtcp = await _bind_pair(
            local, self.touch, receive, peer if receive is not None else None
        )
        track.server_port = track.rtp.get_extra_info("sockname")[1]
        track.client = (peer, *transport.client_ports)
        self.tracks[index] = track
        client_ports = f"{transport.client_ports[0]}-{transport.client_ports[1]}"
        server_ports = f"{track.server_port}-{track.server_port + 1}"
        return f"RTP/AVP;unicast;client_port={client_ports};server_port={server_ports};{ssrc}"

    async def play(self, base_url: str, timeout: float) -> str | None:
        """Join the stream and return the RTP-Info header; call ``start`` after replying."""
        if self._sub is None:
            self._sub = self.stream.subscribe("rtsp")
            # The hub replays the cached GOP at once; the first packet is its keyframe, and its
            # pts anchors RTP-Info so the client knows which timestamp starts the range.
            self._first = self._sub.get_nowait()
            if self._first is None:
                with contextlib.suppress(TimeoutError, StreamEnded):
                    self._first = await asyncio.wait_for(self._sub.get(), timeout)
        if self._first is None:
            return None
        start = self._first.pts / self._first.clock_rate
        infos = []
        for track in sorted(self.tracks.values(), key=lambda t: t.index):
            if track.backchannel is not None:
                continue  # nothing is sent on it, so there is no RTP time to announce
            rtptime = (track.base + round(start * track.info.clock_rate)) & 0xFFFFFFFF
            infos.append(f"url={base_url}trackID={track.index};seq={track.seq};rtptime={rtptime}")
        return ",".join(infos)

    def start(self) -> None:
        """Start sending (after the PLAY reply went out, so media never precedes it)."""
        if self._sub is not None and not self.playing and not self._closed:
            self._by_kind = {t.info.kind: t for t in self.tracks.values() if t.backchannel is None}
            self._next_sr = 0.0  # reports first, also when resuming after PAUSE
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._sub), name=f"rtsp session {self.id}"
            )

    async def pause(self) -> None:
        """Stop sending and leave the stream; PLAY resumes from the newest keyframe."""
        await self._stop_sending()

    async def close(self) -> None:
        """End the session; safe to call twice."""
        self._closed = True
        await self._stop_sending()
        for track in self.tracks.values():
            await _close_track(track)

    async def _stop_sending(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        self._first = None

    async def _run(self, sub: Subscriber) -> None:
        try:
            packet, self._first = self._first, None
            while True:
                if packet is None:
                    packet = await sub.get()
                # Take whatever is queued (the whole cached GOP when starting) as one batch.
                batch = [packet]
                while (packet := sub.get_nowait()) is not None:
                    batch.append(packet)
                for item in batch:
                    self._clock.observe(item)
                if time.monotonic() >= self._next_sr:
                    self._sender_reports()
                self._burst = 0
                for item in batch:
                    self._send(item)
                    if self._burst > _UDP_BURST:
                        # UDP has no backpressure: pace a GOP replay so that the client's
                        # socket buffer keeps up instead of overflowing on the burst.
                        self._burst = 0
                        await asyncio.sleep(0.005)
                await self._flush()
        except StreamEnded:
            _LOGGER.info("rtsp session %s: stream %s ended", self.id, self.stream.name)
        except (ConnectionError, TimeoutError) as err:
            _LOGGER.info("rtsp session %s: client gone (%s)", self.id, type(err).__name__)
        self._on_end(self)

    def _send(self, packet: MediaPacket) -> None:
        track = self._by_kind.get(packet.kind)
        if track is None:
            return
        if packet.kind == "video":
            payloads = self.feed.video_payloads(packet)
            last = len(payloads) - 1
            for i, payload in enumerate(payloads):
                self._emit(track, packet.pts, payload, i == last)
        else:
            for pts, payload in self.feed.audio_payloads(packet, track.info):
                self._emit(track, pts, payload, True)

    def _emit(self, track: _Track, pts: int, payload: bytes, marker: bool) -> None:
        header = rtp_header(
            track.info.payload_type, marker, track.seq, track.base + pts, track.ssrc
        )
        track.seq = (track.seq + 1) & 0xFFFF
        track.packets += 1
        track.octets += len(payload)
        if self.tcp:
            size = len(header) + len(payload)
            self._out += (struct.pack("!cBH", b"$", track.channel, size), header, payload)
        elif track.rtp is not None and track.client is not None:
            track.rtp.sendto(header + payload, track.client[:2])
            self._burst += len(payload)

    def _sender_reports(self) -> None:
        # The first reports go out before any RTP packet, so a client lines audio and video up
        # from the first frame instead of guessing until a report comes.
        now = time.monotonic()
        self._next_sr = now + _SR_INTERVAL
        media_time = self._clock.media_time(now)
        wall = time.time() - time.monotonic() + now
        for track in self.tracks.values():
            if track.backchannel is not None:
                continue  # we send no RTP on it, so there is nothing to report
            rtp_time = track.base + round(media_time * track.info.clock_rate)
            report = sender_report(
                track.ssrc, wall, rtp_time, track.packets, track.octets, self._cname
            )
            if self.tcp:
                self._out += (struct.pack("!cBH", b"$", track.channel + 1, len(report)), report)
            elif track.rtcp is not None and track.client is not None:
                track.rtcp.sendto(report, (track.client[0], track.client[2]))

    async def _flush(self) -> None:
        if self._out:
            # One write per batch: asyncio joins the pieces and makes a single send call.
            self._writer.writelines(self._out)
            self._out = []
            await asyncio.wait_for(self._writer.drain(), _DRAIN_TIMEOUT)

    def stats(self) -> RtspSessionStats:
        """Per-session numbers for the server's stats."""
        return {
            "stream": self.stream.name,
            "transport": "tcp" if self.tcp else "udp",
            "playing": self.playing,
            "packets": sum(t.packets for t in self.tracks.values()),
        }

    def receive_interleaved(self, channel: int, data: bytes) -> bool:
        """Hand an interleaved packet to the backchannel track on ``channel``; False if none."""
        for track in self.tracks.values():
            if track.backchannel is not None and track.channel == channel:
                track.backchannel.receive(data)
                return True
        return False


async def _close_track(track: _Track) -> None:
    _close_udp(track)
    if track.backchannel is not None:
        await track.backchannel.close()


def _close_udp(track: _Track) -> None:
    for transport in (track.rtp, track.rtcp):
        if transport is not None:
            transport.close()
