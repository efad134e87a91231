"""Fuzzing RTSP headers and interleaved frames (issue 12): Transport, Session and Range through
the real server, and ``$``-framed packets as the connection reads them.

The request-line and header-line reader is fuzzed in test_fuzz_input_parsers.py; this file adds
the header *values* a client controls, sent through a whole connection (every reply is a status
that says what is wrong, never 500, and the connection keeps answering), and a grammar-driven
Transport property that checks what the parser picks, not only that it does not raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.rtsp import RtspServer
from bridge.rtsp.message import Interleaved, Request, parse_transport, read_message

from .fake_doorbell import Connector, make_stream
from .test_rtsp import RawClient, Response

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- Transport, by grammar ----------------------------------------------------------------------

# Text a client can put in a header value: the reader refuses control characters at the header
# line (test_fuzz_input_parsers.py covers that), so values carry none.
_printable = st.characters(blacklist_categories=("Cc", "Cs"))

_numbers = st.one_of(
    st.integers(min_value=-3, max_value=70_000).map(str),
    st.sampled_from(["", "²", "٣", "0x10", "+5", " 5", "1e3", "99999999999999999999999"]),
)
_pairs = st.one_of(
    _numbers,
    st.tuples(_numbers, _numbers).map("-".join),
    st.tuples(_numbers, _numbers, _numbers).map("-".join),
)
_params = st.one_of(
    st.sampled_from(["unicast", "multicast", "mode=PLAY", "mode=record", "ttl=1", "append", ""]),
    _pairs.map(lambda p: f"client_port={p}"),
    _pairs.map(lambda p: f"interleaved={p}"),
    _pairs.map(lambda p: f"port={p}"),
    st.sampled_from(["destination=198.51.100.7", "source=x", "ssrc=DEADBEEF", "=", "=5"]),
    st.text(_printable, max_size=12),
)
_specs = st.sampled_from(
    ["RTP/AVP", "RTP/AVP/TCP", "RTP/AVP/UDP", "rtp/avp/tcp", "RTP/SAVP", "RAW/RAW/UDP", "", " "]
) | st.text(_printable, max_size=10)
_alternatives = st.tuples(_specs, st.lists(_params, max_size=5)).map(
    lambda a: ";".join([a[0], *a[1]])
)
transports = st.lists(_alternatives, min_size=1, max_size=4).map(",".join)


def _could_choose(alternative: str, tcp: bool) -> bool:
    parts = [p.strip() for p in alternative.split(";") if p.strip()]
    if not parts or any(p.partition("=")[0] == "multicast" for p in parts[1:]):
        return False
    profiles = ("RTP/AVP/TCP",) if tcp else ("RTP/AVP", "RTP/AVP/UDP")
    return parts[0].upper() in profiles


@FUZZ
@given(transports | st.text(max_size=80))
def test_fuzz_transport_picks_a_supported_unicast_alternative_or_none(header: str) -> None:
    transport = parse_transport(header)
    if transport is None:
        return
    # It came from an alternative in a known profile that is not multicast.
    assert any(_could_choose(alt, transport.tcp) for alt in header.split(","))
    if transport.tcp:
        assert transport.client_ports is None
        if transport.channels is not None:
            assert all(0 <= c <= 255 for c in transport.channels)
    else:
        assert transport.channels is None
        assert transport.client_ports is not None
        assert all(0 < p < 65536 for p in transport.client_ports)


# -- interleaved frames, as the connection reads them -------------------------------------------

_frames = st.tuples(st.integers(0, 255), st.binary(max_size=1500))
_OPTIONS = b"OPTIONS rtsp://127.0.0.1/x RTSP/1.0\r\nCSeq: 7\r\n\r\n"


async def _read_all(data: bytes) -> tuple[list[Request | Interleaved], bool]:
    """Every message in ``data``, and whether the reader stopped on a truncated message."""
    reader = asyncio.StreamReader(limit=64 << 10)
    reader.feed_data(data)
    reader.feed_eof()
    out: list[Request | Interleaved] = []
    while True:
        try:
            message = await read_message(reader)
        except asyncio.IncompleteReadError:
            return out, True
        if message is None:
            return out, False
        out.append(message)


@FUZZ
@given(st.lists(st.one_of(_frames, st.just(None)), max_size=12), st.integers(0, 3))
def test_fuzz_interleaved_frames_come_back_exactly_between_requests(
    items: list[tuple[int, bytes] | None], cut: int
) -> None:
    # Frames of any channel and content (a payload may even look like "$" or a request line)
    # with requests between them: the reader keeps its framing and returns each one intact.
    stream = b"".join(
        _OPTIONS if item is None else struct.pack("!cBH", b"$", item[0], len(item[1])) + item[1]
        for item in items
    )
    messages, truncated = asyncio.run(_read_all(stream))
    assert not truncated
    assert len(messages) == len(items)
    for item, message in zip(items, messages, strict=True):
        if item is None:
            assert isinstance(message, Request)
            assert message.cseq == "7"
        else:
            assert message == Interleaved(*item)
    # A frame cut short at the end of the connection is "need more bytes", never garbage.
    if items and items[-1] is not None and cut:
        size = 4 + len(items[-1][1])
        short = stream[: len(stream) - min(cut, size - 1)]
        messages, truncated = asyncio.run(_read_all(short))
        assert truncated
        assert len(messages) == len(items) - 1


# -- header values through a live connection ----------------------------------------------------

_value_text = st.text(_printable, max_size=40).map(str.strip)
_ranges = st.one_of(
    _value_text,
    st.tuples(
        st.sampled_from(["npt", "clock", "smpte", "smpte-25", "", "NPT"]),
        st.sampled_from(["0-", "0.000-", "now-", "-5", "5-1", "1e400-", "nan-inf", "99999999999-"]),
    ).map("=".join),
)
_ALLOWED = {200, 400, 404, 451, 454, 455, 459, 461, 501, 503}


@dataclass
class _Headers:
    transport: str
    setup_session: str | None
    play_session: str | None
    range: str | None
    frame: tuple[int, bytes]
    track: str


def _session_values(real: bool) -> st.SearchStrategy[str | None]:
    # "@" stands for the id the server gave in SETUP (filled in during the exchange).
    tails = st.sampled_from(["", ";timeout=60", ";timeout=-1", ";", " ;x=y", "\u00e9"])
    if not real:
        return st.none() | _value_text
    return st.one_of(tails.map(lambda t: "@" + t), st.none(), _value_text)


def _headers(ports: tuple[int, int]) -> st.SearchStrategy[_Headers]:
    udp = st.sampled_from([f"{ports[0]}-{ports[1]}", str(ports[0])]).map(
        lambda p: f"RTP/AVP;unicast;client_port={p}"
    )
    tcp = st.sampled_from(["", ";interleaved=0-1", ";interleaved=4-5", ";interleaved=254"]).map(
        lambda p: f"RTP/AVP/TCP;unicast{p}"
    )

    def own_ports_only(header: str) -> bool:
        # Media goes only to our own sockets, never to another program's port on this host.
        transport = parse_transport(header)
        return transport is None or transport.client_ports in (None, ports)

    # Half the exchanges set a session up, so PLAY, PAUSE and TEARDOWN get real work too.
    transport = st.one_of(udp, tcp, st.one_of(transports, _value_text).filter(own_ports_only))
    return st.builds(
        _Headers,
        transport=transport,
        setup_session=_session_values(False),
        play_session=_session_values(True),
        range=st.none() | _ranges,
        frame=_frames,
        track=st.sampled_from(["", "", "/trackID=0", "/trackID=1", "/trackID=9", "/track=²", "/x"]),
    )


class _ErrorLog(logging.Handler):
    """Collects error records: a traceback from the RTSP code is a failure even behind a 4xx."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _error_log() -> Iterator[_ErrorLog]:
    handler = _ErrorLog()
    logger = logging.getLogger("bridge.rtsp")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def _exchange(port: int, url: str, h: _Headers) -> list[int]:
    client = await RawClient.connect(port)
    statuses: list[int] = []

    async def send(method: str, target: str, **headers: str | None) -> Response:
        reply = await client.request(method, target, **{k: v for k, v in headers.items() if v})
        statuses.append(reply.status)
        return reply

    try:
        setup = await send("SETUP", url + h.track, Transport=h.transport, Session=h.setup_session)
        session_id = setup.header("session").split(";")[0] if setup.status == 200 else ""
        # An RTCP-like frame on any channel between requests.
        channel, payload = h.frame
        client.writer.write(struct.pack("!cBH", b"$", channel, len(payload)) + payload)
        session = h.play_session
        if session is not None and session.startswith("@"):
            session = session_id + session[1:]
        await send("PLAY", url, Session=session, Range=h.range)
        await send("GET_PARAMETER", url, Session=session)
        await send("PAUSE", url, Session=session)
        await send("TEARDOWN", url, Session=session)
        # Whatever came before, the connection still answers.
        assert (await send("OPTIONS", url)).status == 200
        return statuses
    finally:
        await client.close()


def test_fuzz_transport_session_and_range_through_the_server_never_500() -> None:
    loop = asyncio.new_event_loop()
    rtp, rtcp = _udp_pair()
    try:
        hub, _stream = make_stream(Connector())
        server = RtspServer(hub.get, host="127.0.0.1", port=0, keyframe_timeout=5.0)
        loop.run_until_complete(server.start())
        url = f"rtsp://127.0.0.1:{server.port}/front-door"
        ports = (rtp.getsockname()[1], rtcp.getsockname()[1])

        @settings(FUZZ, max_examples=60)
        @given(_headers(ports))
        def exchange(h: _Headers) -> None:
            with _error_log() as errors:
                statuses = loop.run_until_complete(
                    asyncio.wait_for(_exchange(server.port, url, h), 30)
                )
            assert set(statuses) <= _ALLOWED, statuses
            assert not errors.records, [r.getMessage() for r in errors.records]

        try:
            exchange()
        finally:
            loop.run_until_complete(server.close())
            loop.run_until_complete(hub.close())
    finally:
        rtp.close()
        rtcp.close()
        loop.close()


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    """Two bound UDP sockets standing in for a client's RTP/RTCP ports (media sent there is
    simply dropped)."""
    while True:
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        port = rtp.getsockname()[1]
        if port % 2 == 0 and port < 65535:
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtcp.bind(("127.0.0.1", port + 1))
            except OSError:
                rtcp.close()
            else:
                return rtp, rtcp
        rtp.close()
