"""The RTSP server against real clients on 127.0.0.1: a hand-written one, ffprobe and ffmpeg."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.media.hub import Hub, Stream
from bridge.media.packet import NAL_AUD, iter_nal_units
from bridge.rtsp import RtspServer

from .fake_doorbell import HEIGHT, WIDTH, Connector, make_stream, noisy_video, probe, run


@dataclass
class Rig:
    server: RtspServer
    hub: Hub
    stream: Stream
    connector: Connector

    def url(self, path: str = "front-door", userinfo: str = "") -> str:
        return f"rtsp://{userinfo}127.0.0.1:{self.server.port}/{path}"


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    async def factory(connector: Connector | None = None, **options: Any) -> Rig:
        connector = connector or Connector()
        hub, stream = make_stream(connector)
        server = RtspServer(hub.get, host="127.0.0.1", port=0, **options)
        await server.start()
        made.append(Rig(server, hub, stream, connector))
        return made[-1]

    yield factory
    for rig in made:
        await rig.server.close()
        await rig.server.close()  # idempotent
        await rig.hub.close()


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers[name.lower()][0]


@dataclass
class RawClient:
    """Speaks RTSP by hand and collects the interleaved frames that arrive meanwhile."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    cseq: int = 0
    frames: list[tuple[int, bytes]] = field(default_factory=list)

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, method: str, url: str, **headers: str) -> Response:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}"]
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await asyncio.wait_for(self.response(), 15)

    async def response(self) -> Response:
        while True:
            first = await self.reader.readexactly(1)
            if first == b"$":
                self.frames.append(await self._frame())
                continue
            head = first + await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode().strip().split("\r\n")
            _, status, reason = status_line.split(" ", 2)
            headers: dict[str, list[str]] = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
            length = int(headers.get("content-length", ["0"])[0])
            body = await self.reader.readexactly(length)
            return Response(int(status), reason, headers, body)

    async def _frame(self) -> tuple[int, bytes]:
        channel, size = struct.unpack("!BH", await self.reader.readexactly(3))
        return channel, await self.reader.readexactly(size)

    async def read_frames(self, seconds: float) -> None:
        async def loop() -> None:
            while True:
                assert await self.reader.readexactly(1) == b"$"
                self.frames.append(await self._frame())

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(loop(), seconds)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def depacketize(payloads: list[bytes]) -> list[bytes]:
    """NAL units back out of single-NAL and FU-A payloads."""
    nals: list[bytes] = []
    fragment = bytearray()
    for p in payloads:
        kind = p[0] & 0x1F
        if kind == 28:
            if p[1] & 0x80:
                fragment = bytearray([(p[0] & 0xE0) | (p[1] & 0x1F)])
            fragment += p[2:]
            if p[1] & 0x40:
                nals.append(bytes(fragment))
        else:
            assert 1 <= kind <= 23, f"unexpected payload type {kind}"
            nals.append(p)
    return nals


async def setup_and_play(client: RawClient, url: str) -> tuple[Response, Response]:
    """DESCRIBE, SETUP every track over TCP, PLAY; returns (DESCRIBE, PLAY) responses."""
    describe = await client.request("DESCRIBE", url, Accept="application/sdp")
    assert describe.status == 200, describe
    controls = re.findall(r"a=control:(trackID=\d+)", describe.body.decode())
    session = None
    for i, control in enumerate(controls):
        extra = {"Session": session} if session else {}
        reply = await client.request(
            "SETUP",
            f"{url}/{control}",
            Transport=f"RTP/AVP/TCP;unicast;interleaved={2 * i}-{2 * i + 1}",
            **extra,
        )
        assert reply.status == 200, reply
        session = reply.header("session").split(";")[0]
    assert session is not None
    play = await client.request("PLAY", url + "/", Session=session)
    assert play.status == 200
    return describe, play


# -- no network ----------------------------------------------------------------------------------


def test_fu_a_round_trip_and_parameter_sets() -> None:
    from bridge.rtsp.rtp import MAX_PAYLOAD, h264_payloads

    idr = next(p for p in noisy_video() if p.keyframe)
    nals = list(iter_nal_units(idr.data))
    payloads = h264_payloads(idr.data)
    assert max(len(p) for p in payloads) <= MAX_PAYLOAD
    assert any(p[0] & 0x1F == 28 for p in payloads), "the IDR should need FU-A"
    assert depacketize(payloads) == [n for n in nals if n[0] & 0x1F != NAL_AUD]
    # An IDR without in-band parameter sets gets them put in front.
    bare = b"".join(b"\x00\x00\x00\x01" + n for n in nals if n[0] & 0x1F not in (7, 8))
    sps, pps = nals[0], nals[1]
    assert depacketize(h264_payloads(bare, sps, pps))[:2] == [sps, pps]


# -- a hand-written client -----------------------------------------------------------------------


async def test_raw_tcp_client_gets_rtp_fu_a_and_sender_reports(make_rig: RigFactory) -> None:
    rig = await make_rig()
    client = await RawClient.connect(rig.server.port)
    options = await client.request("OPTIONS", rig.url())
    assert "DESCRIBE" in options.header("public")
    describe, play = await setup_and_play(client, rig.url())
    sdp = describe.body.decode()
    assert "sprop-parameter-sets=" in sdp
    assert re.search(r"profile-level-id=[0-9a-f]{6}", sdp)
    assert "a=rtpmap:97 mpeg4-generic/16000/1" in sdp
    assert re.search(r"config=[0-9a-f]{4}", sdp)
    assert describe.header("content-base") == rig.url() + "/"
    rtp_info = {
        int(track): (int(seq), int(rtptime))
        for track, seq, rtptime in re.findall(
            r"url=rtsp://[^,;]+/trackID=(\d+);seq=(\d+);rtptime=(\d+)", play.header("rtp-info")
        )
    }
    assert set(rtp_info) == {0, 1}
    await client.read_frames(1.5)
    assert rig.server.stats()["streams"] == {"front-door": 1}
    teardown = await client.request("TEARDOWN", rig.url(), Session=play.header("session"))
    assert teardown.status == 200
    await client.close()

    frames = client.frames
    video = [d for ch, d in frames if ch == 0]
    audio = [d for ch, d in frames if ch == 2]
    reports = {ch: d for ch, d in frames if ch in (1, 3)}
    assert set(reports) == {1, 3}, "a sender report on each RTCP channel"
    # The sender report comes before the track's first RTP packet, so clients sync at once.
    first_video = next(i for i, (ch, _) in enumerate(frames) if ch == 0)
    assert any(ch == 1 for ch, _ in frames[:first_video])
    for report, rtp in ((reports[1], video[0]), (reports[3], audio[0])):
        assert report[1] == 200  # SR
        assert report[4:8] == rtp[8:12], "SR SSRC matches the RTP stream's"

    seq_ts = [struct.unpack("!BBHII", p[:12]) for p in video]
    assert all(v == 0x80 and pt & 0x7F == 96 for v, pt, *_ in seq_ts)
    seqs = [s for _, _, s, _, _ in seq_ts]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)), "seq gap"
    assert seqs[0] == rtp_info[0][0]
    assert seq_ts[0][3] == rtp_info[0][1], "RTP-Info rtptime is the first packet's timestamp"
    # Reassemble access units on the marker bit and compare with what the doorbell sent.
    units: list[list[bytes]] = [[]]
    stamps: list[int] = []
    for (_, pt, _, ts, _), packet in zip(seq_ts, video, strict=True):
        units[-1].append(packet[12:])
        if pt & 0x80:
            stamps.append(ts)
            units.append([])
    units.pop()
    originals = {p.data for p in noisy_video()}
    for payloads in units:
        nals = depacketize(payloads)
        au = b"".join(b"\x00\x00\x00\x01" + n for n in nals)
        assert any(
            [n for n in iter_nal_units(o) if n[0] & 0x1F != NAL_AUD] == nals for o in originals
        ), f"access unit of {len(au)} bytes does not match any sent"
    assert len(units) >= 15, "at least a second of video"
    diffs = {(b - a) & 0xFFFFFFFF for a, b in itertools.pairwise(stamps)}
    assert diffs <= {6000}, f"15 fps at 90 kHz, got steps {diffs}"
    assert any(len(p) > 1000 for p in video), "big NAL units went out as FU-A"
    # AAC per RFC 3640: a 16-bit AU-headers-length, then the AU size in the top 13 bits.
    for packet in audio:
        assert packet[1] & 0x7F == 97
        headers_bits, au_header = struct.unpack("!HH", packet[12:16])
        assert headers_bits == 16
        assert au_header >> 3 == len(packet) - 16


async def test_errors_have_the_right_status(make_rig: RigFactory) -> None:
    rig = await make_rig()
    client = await RawClient.connect(rig.server.port)
    missing = await client.request("DESCRIBE", rig.url("back-door"))
    assert (missing.status, missing.reason) == (404, "Stream Not Found")
    assert b"back-door" in missing.body
    assert (await client.request("RECORD", rig.url())).status == 501
    assert (await client.request("PLAY", rig.url(), Session="nope")).status == 454
    assert (await client.request("GET_PARAMETER", rig.url(), Session="nope")).status == 454
    bad_transport = await client.request(
        "SETUP", rig.url() + "/trackID=0", Transport="RTP/AVP;multicast"
    )
    assert bad_transport.status == 461
    client.writer.write(b"GARBAGE\r\n\r\n")
    assert (await client.response()).status == 400
    await client.close()
    # The server is unharmed: a new connection still works.
    other = await RawClient.connect(rig.server.port)
    assert (await other.request("OPTIONS", "*")).status == 200
    await other.close()


async def test_no_picture_in_time_is_503(make_rig: RigFactory) -> None:
    rig = await make_rig(Connector(durations=[0.0] * 100), keyframe_timeout=0.5)
    client = await RawClient.connect(rig.server.port)
    reply = await client.request("DESCRIBE", rig.url())
    assert reply.status == 503
    await client.close()


async def test_auth_challenges_and_refuses(make_rig: RigFactory) -> None:
    rig = await make_rig(username="nvr", password="s3cret", auth="any")
    client = await RawClient.connect(rig.server.port)
    assert (await client.request("OPTIONS", rig.url())).status == 200
    challenge = await client.request("DESCRIBE", rig.url())
    assert challenge.status == 401
    schemes = challenge.headers["www-authenticate"]
    assert schemes[0].startswith("Digest ")
    assert schemes[1].startswith("Basic ")
    wrong = base64.b64encode(b"nvr:guess").decode()
    assert (
        await client.request("DESCRIBE", rig.url(), Authorization=f"Basic {wrong}")
    ).status == 401
    right = base64.b64encode(b"nvr:s3cret").decode()
    assert (
        await client.request("DESCRIBE", rig.url(), Authorization=f"Basic {right}")
    ).status == 200
    # Digest by hand, RFC 2617 without qop (what live555-based NVRs send).
    realm = re.search(r'realm="([^"]+)"', schemes[0]).group(1)  # type: ignore[union-attr]
    nonce = re.search(r'nonce="([^"]+)"', schemes[0]).group(1)  # type: ignore[union-attr]

    def digest(password: str) -> str:
        def md5(s: str) -> str:
            return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()

        response = md5(f"{md5(f'nvr:{realm}:{password}')}:{nonce}:{md5('DESCRIBE:' + rig.url())}")
        return (
            f'Digest username="nvr", realm="{realm}", nonce="{nonce}", uri="{rig.url()}", '
            f'response="{response}"'
        )

    assert (await client.request("DESCRIBE", rig.url(), Authorization=digest("nope"))).status == 401
    assert (
        await client.request("DESCRIBE", rig.url(), Authorization=digest("s3cret"))
    ).status == 200
    await client.close()


async def test_udp_by_hand_and_session_timeout(make_rig: RigFactory) -> None:
    rig = await make_rig(session_timeout=1)
    loop = asyncio.get_running_loop()
    received: list[tuple[bytes, tuple[str, int]]] = []

    class Sink(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.append((data, addr))

    rtp, _ = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    port = rtp.get_extra_info("sockname")[1]
    client = await RawClient.connect(rig.server.port)
    await client.request("DESCRIBE", rig.url())
    setup = await client.request(
        "SETUP",
        rig.url() + "/trackID=0",
        Transport=f"RTP/AVP;unicast;client_port={port}-{port + 1}",
    )
    assert setup.status == 200
    server_port = int(re.search(r"server_port=(\d+)-", setup.header("transport")).group(1))  # type: ignore[union-attr]
    assert server_port % 2 == 0
    play = await client.request("PLAY", rig.url(), Session=setup.header("session"))
    assert play.status == 200
    await asyncio.sleep(0.5)
    assert received, "no RTP over UDP"
    assert {addr for _, addr in received} == {("127.0.0.1", server_port)}
    assert rig.server.stats()["sessions"] == 1
    # No RTCP and no requests from the client: the session expires.
    for _ in range(40):
        if rig.server.stats()["sessions"] == 0:
            break
        await asyncio.sleep(0.1)
    assert rig.server.stats()["sessions"] == 0
    rtp.close()
    await client.close()


async def test_pause_and_resume(make_rig: RigFactory) -> None:
    rig = await make_rig()
    client = await RawClient.connect(rig.server.port)
    _, play = await setup_and_play(client, rig.url())
    session = play.header("session").split(";")[0]
    await client.read_frames(0.5)
    assert (await client.request("PAUSE", rig.url(), Session=session)).status == 200
    paused_at = len(client.frames)
    await asyncio.sleep(0.3)
    assert (await client.request("GET_PARAMETER", rig.url(), Session=session)).status == 200
    assert len(client.frames) == paused_at, "media kept flowing while paused"
    assert (await client.request("PLAY", rig.url(), Session=session)).status == 200
    await client.read_frames(0.5)
    seqs = [struct.unpack("!H", d[2:4])[0] for ch, d in client.frames if ch == 0]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)), "seq must continue"
    await client.close()


async def test_close_ends_connected_clients(make_rig: RigFactory) -> None:
    rig = await make_rig()
    client = await RawClient.connect(rig.server.port)
    await setup_and_play(client, rig.url())
    await rig.server.close()
    await rig.server.close()
    assert await asyncio.wait_for(_drain_to_eof(client.reader), 5)
    await client.close()
    assert rig.server.stats() == {"connections": 0, "sessions": 0, "streams": {}}


async def _drain_to_eof(reader: asyncio.StreamReader) -> bool:
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


# -- real clients (ffprobe, ffmpeg) --------------------------------------------------------------


@pytest.mark.slow
async def test_ffprobe_sees_h264_and_aac(make_rig: RigFactory) -> None:
    rig = await make_rig()
    info = await probe(rig.url(), "-rtsp_transport", "tcp")
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (WIDTH, HEIGHT)
    assert streams["audio"]["codec_name"] == "aac"
    assert streams["audio"]["sample_rate"] == "16000"


@pytest.mark.slow
async def test_ffprobe_g711_passthrough(make_rig: RigFactory) -> None:
    rig = await make_rig(audio="passthrough")
    info = await probe(rig.url(), "-rtsp_transport", "udp")
    codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    assert codecs == {"video": "h264", "audio": "pcm_mulaw"}


async def record(url: str, out: Path, seconds: float, transport: str = "tcp") -> dict[str, Any]:
    code, _, err = await run(
        "ffmpeg", "-v", "warning", "-rtsp_transport", transport, "-i", url,
        "-c", "copy", "-t", str(seconds), "-y", str(out),
        timeout=seconds + 20,
    )  # fmt: skip
    assert code == 0, err
    # The muxer would quietly patch timestamps that go backwards; its warning gives them away.
    assert "Non-monotonous" not in err, err
    assert "max delay reached" not in err, err  # UDP: no packets lost or reordered
    return await probe(str(out), "-count_frames", "-show_packets")


def frame_count(info: dict[str, Any], kind: str) -> int:
    stream = next(s for s in info["streams"] if s["codec_type"] == kind)
    return int(stream.get("nb_read_frames", 0))


def assert_monotonic(info: dict[str, Any]) -> None:
    for stream in info["streams"]:
        dts = [
            float(p["dts_time"])
            for p in info["packets"]
            if p["stream_index"] == stream["index"] and "dts_time" in p
        ]
        assert dts, stream["codec_type"]
        assert all(b > a for a, b in itertools.pairwise(dts)), f"{stream['codec_type']} went back"


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_ffmpeg_records_every_frame(
    make_rig: RigFactory, tmp_path: Path, transport: str
) -> None:
    rig = await make_rig()
    info = await record(rig.url(), tmp_path / "out.mp4", 3, transport)
    # 3 s of 15 fps (starting at the cached keyframe); a frame either way at the cut.
    assert 44 <= frame_count(info, "video") <= 47
    assert frame_count(info, "audio") >= 30  # 16 kHz AAC: 15.6 frames a second
    assert_monotonic(info)


@pytest.mark.slow
async def test_ffmpeg_with_digest_credentials(make_rig: RigFactory, tmp_path: Path) -> None:
    rig = await make_rig(username="nvr", password="p@ss word")
    code, _, err = await run("ffprobe", "-v", "error", rig.url(userinfo="nvr:wrong@"))
    assert code != 0
    assert "401" in err
    info = await record(rig.url(userinfo="nvr:p%40ss%20word@"), tmp_path / "a.mp4", 1)
    assert frame_count(info, "video") >= 14


@pytest.mark.slow
async def test_source_reconnect_keeps_time_moving(make_rig: RigFactory, tmp_path: Path) -> None:
    rig = await make_rig(Connector(durations=[1.5] * 20))  # the doorbell drops every 1.5 s
    recording = asyncio.create_task(record(rig.url(), tmp_path / "r.mp4", 4, "udp"))
    # What the client itself demuxes, before any muxer could smooth timestamps over.
    live = await probe(
        rig.url(), "-rtsp_transport", "tcp", "-read_intervals", "%+5", "-show_packets"
    )
    assert rig.stream.reconnects >= 3
    for kind in ("video", "audio"):
        index = next(s["index"] for s in live["streams"] if s["codec_type"] == kind)
        pts = [int(p["pts"]) for p in live["packets"] if p["stream_index"] == index and "pts" in p]
        assert all(b > a for a, b in itertools.pairwise(pts)), f"{kind} went backwards"
    assert sum(p["stream_index"] == 0 for p in live["packets"]) >= 60
    info = await recording
    assert_monotonic(info)
    assert frame_count(info, "video") >= 55  # a frame or two may fall into each reconnect gap


@pytest.mark.slow
async def test_two_clients_one_leaves(make_rig: RigFactory, tmp_path: Path) -> None:
    rig = await make_rig()
    long_run = asyncio.create_task(record(rig.url(), tmp_path / "long.mp4", 4))
    await asyncio.sleep(0.5)
    short = await record(rig.url(), tmp_path / "short.mp4", 1, "udp")
    assert frame_count(short, "video") >= 14
    info = await long_run
    assert 59 <= frame_count(info, "video") <= 62
    assert_monotonic(info)
