"""Property tests for parsers of outside bytes (issue 12): RTSP requests, WHEP offers, webhooks.

Each property: a clear error or a valid result, never an unexpected exception, and bounded.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.rtsp.message import (
    Interleaved,
    ParseError,
    Request,
    parse_transport,
    read_message,
    split_url,
)
from bridge.skybell.payloads import Event, PayloadError, event_from_query, event_from_webhook
from bridge.webrtc import OfferError
from bridge.webrtc.offer import MAX_SDP, Offer, parse_offer

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- RTSP ---------------------------------------------------------------------------------------

_RTSP_TOKENS = [
    b"OPTIONS rtsp://127.0.0.1:8554/front-door RTSP/1.0\r\n",
    b"DESCRIBE rtsp://h/front-door/trackID=0 RTSP/1.0\r\n",
    b"SETUP * RTSP/1.0\r\n",
    b"CSeq: 1\r\n",
    b"CSeq: \xc2\xb2\r\n",
    b"Content-Length: 4\r\n",
    b"Content-Length: \xc2\xb2\r\n",
    b"Content-Length: 99999999999999999999999\r\n",
    b"Transport: RTP/AVP;unicast;client_port=5000-5001\r\n",
    b"Transport: RTP/AVP/TCP;interleaved=\xc2\xb2-3\r\n",
    b"Session: abc;timeout=60\r\n",
    b"Range: npt=0.000-\r\n",
    b'Authorization: Digest username="a", uri="x", nc=\xff\r\n',
    b"$\x00\x00\x04abcd",
    b"$\x01\xff\xff",
    b"\r\n",
    b"\n",
    b":",
    b" ",
    b"\x00",
    b"\xff\xfe",
]
_HEADER_NAMES = [b"CSeq", b"Content-Length", b"Transport", b"Session", b"Range", b"Authorization"]
_HEADER_VALUES = [b"1", b"\xc2\xb2", b"\xd9\xa3", b"-1", b"99999999999999999999999", b"0", b""]
_header = st.tuples(
    st.sampled_from(_HEADER_NAMES) | st.binary(max_size=8),
    st.sampled_from(_HEADER_VALUES) | st.binary(max_size=16),
).map(lambda nv: nv[0] + b": " + nv[1] + b"\r\n")
# Shaped like a request, so the header and body paths are reached, not just the request line.
_request = st.tuples(
    st.sampled_from(_RTSP_TOKENS[:3]), st.lists(_header, max_size=6), st.binary(max_size=30)
).map(lambda parts: parts[0] + b"".join(parts[1]) + b"\r\n" + parts[2])
_rtsp_bytes = st.one_of(
    _request,
    st.binary(max_size=600),
    st.lists(st.one_of(st.sampled_from(_RTSP_TOKENS), st.binary(max_size=20)), max_size=12).map(
        b"".join
    ),
)


async def _read_all(data: bytes) -> list[Request | Interleaved]:
    reader = asyncio.StreamReader(limit=64 << 10)
    reader.feed_data(data)
    reader.feed_eof()
    out: list[Request | Interleaved] = []
    while True:
        try:
            message = await read_message(reader)
        except (ParseError, asyncio.IncompleteReadError):
            return out  # a clear refusal, or "need more bytes" (here: the end)
        if message is None:
            return out
        out.append(message)
        assert len(out) <= len(data)  # every message consumes input: bounded


@FUZZ
@given(_rtsp_bytes)
@example(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: \xc2\xb2\r\n\r\n")
@example(b"SETUP * RTSP/1.0\r\nTransport: RTP/AVP;client_port=\xc2\xb2-\xc2\xb3\r\n\r\n")
def test_rtsp_reader_gives_messages_or_a_clear_error(data: bytes) -> None:
    messages = asyncio.run(_read_all(data))
    for message in messages:
        if isinstance(message, Request):
            assert len(message.body) <= 64 << 10
            cseq = message.cseq
            assert cseq is None or (cseq.isascii() and cseq.isdigit())
            message.session_id  # noqa: B018 - must not raise
            parse_transport(message.headers.get("transport"))
            split_url(message.url)


@FUZZ
@given(st.text(max_size=200))
def test_rtsp_header_parsers_never_raise(text: str) -> None:
    transport = parse_transport(text)
    if transport is not None and transport.client_ports is not None:
        assert all(0 < p < 65536 for p in transport.client_ports)
    if transport is not None and transport.channels is not None:
        assert all(0 <= c <= 255 for c in transport.channels)
    _name, track = split_url(text)
    assert track is None or 0 <= track < 10**9


# -- WHEP offers --------------------------------------------------------------------------------

_SDP_LINES = [
    "v=0",
    "o=- 1 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "c=IN IP4 0.0.0.0",
    "c=IN IP4 ²",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
    "a=fingerprint:x",
    "a=setup:actpass",
    "a=group:BUNDLE 0 1",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
    "m=video ² UDP/TLS/RTP/SAVPF 96",
    "m=audio 9 UDP/TLS/RTP/SAVPF 0 111",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=text 9 RTP/AVP 0",
    "a=recvonly",
    "a=sendrecv",
    "a=inactive",
    "a=rtcp-mux",
    "a=mid:0",
    "a=rtpmap:96 H264/90000",
    "a=rtpmap:97 rtx/90000",
    "a=rtpmap:98 H264/90000",
    "a=rtpmap:x H264",
    "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f",
    "a=fmtp:97 apt=96",
    "a=fmtp:99 apt=x",
    "a=rtcp-fb:96 nack pli",
    "a=rtcp-fb:* x",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:0 PCMU/8000",
    "a=ssrc:1 cname:x",
    "a=ssrc-group:FID 1 ²",
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ host",
    "a=candidate:x",
    "a=sctp-port:5000",
    "a=sctp-port:x",
    "a=max-message-size:²",
    "a=extmap:1 urn:x",
    "a=extmap:x",
    "a=msid:- x",
    "a=ice-options:trickle",
]
_VALID = [
    "v=0",
    "o=- 1 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
    "a=setup:actpass",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
    "c=IN IP4 0.0.0.0",
    "a=recvonly",
    "a=rtcp-mux",
    "a=mid:0",
    "a=rtpmap:96 H264/90000",
    "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
]


def _mutate(edits: list[tuple[int, int, str]]) -> str:
    """A valid offer with lines dropped, replaced or inserted: reaches aiortc's parser."""
    lines = list(_VALID)
    for op, where, text in edits:
        i = where % (len(lines) + 1)
        if op == 0:
            lines.insert(i, text)
        elif lines and i < len(lines):
            if op == 1:
                del lines[i]
            else:
                lines[i] = text
    return "\r\n".join(lines) + "\r\n"


_sdp = st.one_of(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 40),
            st.sampled_from(_SDP_LINES) | st.text(max_size=30),
        ),
        max_size=6,
    ).map(_mutate),
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(_SDP_LINES), st.text(max_size=30)), max_size=40).map(
        lambda lines: "\r\n".join(lines) + "\r\n"
    ),
    st.lists(st.sampled_from(_SDP_LINES), max_size=40).map(
        lambda lines: "v=0\r\n" + "\r\n".join(lines) + "\r\n"
    ),
)


@FUZZ
@given(_sdp)
# aiortc raised StopIteration (a 500) for an rtpmap whose payload type the m-line lacks.
@example("\r\n".join([*_VALID, "a=rtpmap:98 H264/90000"]) + "\r\n")
def test_offer_parser_gives_an_offer_or_an_offer_error(sdp: str) -> None:
    try:
        offer = parse_offer(sdp)
    except OfferError as err:
        reason = str(err)
        assert reason
        assert "\n" not in reason
        return
    assert isinstance(offer, Offer)
    assert offer.h264
    assert len(sdp.encode("utf-8", "surrogatepass")) <= MAX_SDP


# -- webhook payloads ---------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(
        ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "²", "1e400", "NaN"]
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
_payload = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(["doorbell", "motion", "vready", "sound", ""]) | _json,
        "device_id": st.sampled_from(["0579ce92", ""]) | _json,
        "name": _json,
        "activity_id": _json,
        "date_time": st.integers()
        | st.floats()
        | st.sampled_from(
            [
                "9999-12-31T23:59:59-14:00",
                "0001-01-01T00:00:00+14:00",
                "9999-12-31T23:59:59Z",
                "2024-01-01T00:00:00",
                "99999999999999999999999",
                "²",
            ]
        )
        | _json,
        "detail": _json | st.dictionaries(st.sampled_from(["activity_id", "x"]), _json),
        "preview": _json,
    },
)


def _check_event(event: Event) -> None:
    json.dumps(event.as_dict(), default=str)  # what the log and the SSE feed do with it
    assert event.time.utcoffset() is not None


@FUZZ
@given(st.one_of(_payload, _json))
def test_webhook_payload_gives_an_event_or_a_payload_error(payload: Any) -> None:
    try:
        event = event_from_webhook(payload, {})
    except PayloadError as err:
        reason = str(err)
        assert reason
        return
    _check_event(event)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["event", "device_id", "name", "date_time", "activity_id"]),
        st.text(max_size=40) | st.sampled_from(["9999-12-31T23:59:59-14:00", "²", "9" * 30]),
    )
)
def test_webhook_query_gives_an_event_or_a_payload_error(query: dict[str, str]) -> None:
    try:
        event = event_from_query(query, {})
    except PayloadError:
        return
    _check_event(event)


def test_webhook_dates_out_of_range_are_payload_errors() -> None:
    for when in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", 10**30, 1e300):
        payload = {"event": "motion", "device_id": "x", "date_time": when}
        with pytest.raises(PayloadError, match="date_time"):
            event_from_webhook(payload, {})
