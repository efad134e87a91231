"""Fuzzing the SkyBell LAN datagrams (issue 12): any bytes from anyone on the LAN give a token or
nothing, and the listener stays bounded however many well-formed packets a stranger sends."""

from __future__ import annotations

import asyncio
import base64
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.skybell.directory import DeviceDirectory
from bridge.skybell.models import Device
from bridge.skybell.payloads import Event
from bridge.skybell.udp import (
    BUTTON_PACKET,
    MOTION_PACKET,
    UdpListener,
    encode_packet,
    parse_packet,
)

_LAST = base64.b64encode(b"the last packet").decode()
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_tokens = st.binary(min_size=1, max_size=700).map(lambda b: base64.b64encode(b).decode())
# Packets that get past the length check more often than random bytes would.
_framed = st.one_of(
    st.binary(max_size=1100),
    st.binary(max_size=1100).map(lambda b: len(b).to_bytes(4, "little") + b),
    _tokens.map(encode_packet),
    _tokens.map(lambda t: encode_packet(t)[:-1]),  # no newline: still well formed
    st.tuples(_tokens, st.binary(min_size=1, max_size=3)).map(
        lambda tb: (len(tb[0]) + len(tb[1])).to_bytes(4, "little") + tb[0].encode() + tb[1]
    ),
    st.sampled_from([BUTTON_PACKET, MOTION_PACKET, BUTTON_PACKET[:-1], BUTTON_PACKET + b"\n"]),
)


@FUZZ
@given(_framed)
def test_fuzz_udp_packet_gives_its_token_or_none(data: bytes) -> None:
    token = parse_packet(data)
    if token is None:
        return
    # Only what the datagram says, bounded, and base64 text.
    assert data[4:].removesuffix(b"\n") == token.encode("ascii")
    assert 0 < len(token) <= 1024
    base64.b64decode(token, validate=True)


@FUZZ
@given(_tokens.filter(lambda t: len(t) < 1024))
def test_fuzz_udp_packet_round_trips(token: str) -> None:
    assert parse_packet(encode_packet(token)) == token


def _device(ip: str) -> Device:
    return Device.from_api(
        {"device_id": "dev-1", "name": "Front Door", "telemetry": {"ip_address": ip}}
    )


def _run_listener(datagrams: list[bytes]) -> tuple[list[Event], UdpListener]:
    """Send ``datagrams`` from 127.0.0.1 to a listener on a real socket; return what it made."""

    async def scenario() -> tuple[list[Event], UdpListener]:
        events: list[Event] = []
        done = asyncio.Event()

        def publish(event: Event) -> None:
            events.append(event)
            if event.payload.get("token") == _LAST:
                done.set()

        directory = DeviceDirectory([_device("127.0.0.1")])
        listener = UdpListener(directory, publish, host="127.0.0.1", port=0)
        await listener.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for data in [*datagrams, encode_packet(_LAST)]:
                    sock.sendto(data, ("127.0.0.1", listener.port))
            # Loopback delivers these in order, so the last packet's event means all are in.
            await asyncio.wait_for(done.wait(), 10)
            events.pop()
            return events, listener
        finally:
            await listener.close()

    return asyncio.run(scenario())


@settings(FUZZ, max_examples=40)
@given(st.lists(_framed.filter(lambda d: bool(d) and parse_packet(d) != _LAST), max_size=20))
def test_fuzz_udp_listener_publishes_only_well_formed_packets(datagrams: list[bytes]) -> None:
    events, listener = _run_listener(datagrams)
    tokens = [parse_packet(d) for d in datagrams]
    assert listener.counts["received"] == len(datagrams) + 1
    assert listener.counts["junk"] == tokens.count(None)
    assert len(events) == len(datagrams) - tokens.count(None)
    for event, token in zip(events, [t for t in tokens if t is not None], strict=True):
        assert event.device == "front-door"
        assert event.type in ("doorbell", "motion", "unknown")
        assert event.type != "unknown" or event.payload["token"] == token


def test_fuzz_udp_stranger_flood_keeps_lookups_bounded() -> None:
    # Found reviewing the listener for this fuzzing: every well-formed packet from an unknown address started its own
    # lookup task, each waiting on the cloud; a LAN host sending fast could pile up without end
    # while the cloud was slow. Now one lookup per address holds a few packets.
    async def scenario() -> tuple[int, int, int]:
        release = asyncio.Event()
        calls = 0

        async def slow_refresh() -> list[Device]:
            nonlocal calls
            calls += 1
            await release.wait()
            return [_device("127.0.0.1")]

        events: list[Event] = []
        listener = UdpListener(
            DeviceDirectory([], refresh=slow_refresh), events.append, host="127.0.0.1", port=0
        )
        await listener.start()
        try:
            before = len(asyncio.all_tasks())
            for _ in range(2000):
                listener.datagram_received(BUTTON_PACKET, ("127.0.0.1", 5000))
            await asyncio.sleep(0.01)
            waiting = len(asyncio.all_tasks()) - before
            release.set()
            await asyncio.sleep(0.01)
            return waiting, calls, len(events)
        finally:
            await listener.close()

    waiting, calls, published = asyncio.run(scenario())
    assert waiting <= 1
    assert calls == 1
    assert 1 <= published <= 4  # the packets that waited for the lookup, once it answered
