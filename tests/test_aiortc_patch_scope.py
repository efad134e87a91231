"""Host candidates scoped per peer: the doorbell side, the simulated doorbells and the browser-facing
peers each gather on their own addresses, never on another kind's.

Most tests here use 127.0.0.2 as the "other" address: Linux answers on all of 127.0.0.0/8, so
peers stay on loopback while the two settings can still be told apart in the SDP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bridge.media import aiortc_patch
from bridge.media.webrtc_source import WebRtcSource

from .serve_util import BridgeFactory


def host_addresses(sdp: str) -> set[str]:
    """The addresses of the host candidates in an SDP."""
    found = set()
    for line in sdp.splitlines():
        if line.startswith("a=candidate:") and " typ host" in line:
            found.add(line.split()[4])
    return found


def recvonly_peer() -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: nothing is sent
    pc.addTransceiver("video", direction="recvonly")
    return pc


async def offer_addresses(pc: RTCPeerConnection) -> set[str]:
    await pc.setLocalDescription(await pc.createOffer())
    return host_addresses(pc.localDescription.sdp)


@pytest.fixture
def no_process_restriction() -> Iterator[None]:
    # conftest restricts the whole process to loopback; these tests show what a peer with no
    # restriction of its own gathers, so they lift it and put it back afterwards.
    aiortc_patch.restrict_host_candidates(None)
    yield
    aiortc_patch.restrict_host_candidates(["127.0.0.1"])


async def test_two_peers_in_one_process_gather_on_their_own_addresses(
    no_process_restriction: None,
) -> None:
    with aiortc_patch.scoped_host_candidates(["127.0.0.1"]):
        loopback = recvonly_peer()
    free = recvonly_peer()
    try:
        # Gathering happens after the scope has ended: each ICE connection kept its addresses.
        got_loopback, got_free = await asyncio.gather(
            offer_addresses(loopback), offer_addresses(free)
        )
    finally:
        await loopback.close()
        await free.close()
    assert got_loopback == {"127.0.0.1"}
    # The unrestricted peer gets aioice's own choice: every interface but loopback. On a machine
    # with only loopback that is nothing, and the comparison still holds.
    every_interface = set(aiortc_patch._original_get_host_addresses(True, True))
    assert got_free == every_interface
    assert "127.0.0.1" not in got_free


async def test_a_scope_wins_over_the_process_wide_list_and_none_undoes_an_outer_one() -> None:
    with aiortc_patch.scoped_host_candidates(["127.0.0.2"]):
        scoped = recvonly_peer()
        with aiortc_patch.scoped_host_candidates(None):
            inner = recvonly_peer()
    outside = recvonly_peer()
    try:
        assert await offer_addresses(scoped) == {"127.0.0.2"}
        assert await offer_addresses(inner) == {"127.0.0.1"}  # the process-wide list
        assert await offer_addresses(outside) == {"127.0.0.1"}
    finally:
        for pc in (scoped, inner, outside):
            await pc.close()


async def test_gathering_in_a_task_started_under_another_scope_keeps_the_peers_own() -> None:
    with aiortc_patch.scoped_host_candidates(["127.0.0.2"]):
        pc = recvonly_peer()
    with aiortc_patch.scoped_host_candidates(["127.0.0.1"]):
        # A task copies the context it is created in: here, the other scope.
        task = asyncio.create_task(offer_addresses(pc))
    try:
        assert await task == {"127.0.0.2"}
    finally:
        await pc.close()


async def test_an_answerer_built_in_a_scope_answers_with_its_addresses() -> None:
    offerer = recvonly_peer()
    await offerer.setLocalDescription(await offerer.createOffer())
    with aiortc_patch.scoped_host_candidates(["127.0.0.2"]):
        answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        # No transceiver of its own: setRemoteDescription makes the transport.
        await answerer.setRemoteDescription(offerer.localDescription)
    try:
        await answerer.setLocalDescription(await answerer.createAnswer())
        assert host_addresses(answerer.localDescription.sdp) == {"127.0.0.2"}
    finally:
        await offerer.close()
        await answerer.close()


async def test_the_doorbell_side_source_offers_its_own_addresses() -> None:
    source = WebRtcSource(host_addresses=["127.0.0.2"])
    plain = WebRtcSource()
    try:
        assert host_addresses(await source.create_offer()) == {"127.0.0.2"}
        assert host_addresses(await plain.create_offer()) == {"127.0.0.1"}
    finally:
        await source.close()
        await plain.close()


def test_setting_text_to_addresses() -> None:
    assert aiortc_patch.parse_host_addresses("") is None
    assert aiortc_patch.parse_host_addresses(" , ") is None
    assert aiortc_patch.parse_host_addresses("127.0.0.1, ::1") == ["127.0.0.1", "::1"]


def test_the_patch_still_wraps_aioice_connections() -> None:
    aiortc_patch.install()
    assert aioice.ice.Connection.__init__ is aiortc_patch._connection_init
    assert aioice.ice.Connection.gather_candidates is aiortc_patch._gather_candidates


async def whep_answer(url: str) -> str:
    """Offer a recvonly peer to the bridge's WHEP endpoint and return the answer SDP."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp,
        ):
            assert resp.status == 201, await resp.text()
            answer = await resp.text()
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return answer
    finally:
        await pc.close()


async def test_browser_peers_do_not_inherit_the_doorbell_sides_addresses(
    make_bridge: BridgeFactory,
) -> None:
    # The doorbell side is on 127.0.0.2; viewers have no setting of their own, so they get the
    # process's (loopback here, every interface in production), not the doorbell side's.
    bridge = await make_bridge(SKYBELL_BRIDGE_STREAMS_ICE_HOST_ADDRESSES="127.0.0.2")
    answer = await whep_answer(bridge.http_url + "api/webrtc?src=front-door")
    # A WHEP answer waits for the stream's first keyframe: it came over the doorbell side's peer,
    # whose only host candidate was 127.0.0.2.
    assert host_addresses(answer) == {"127.0.0.1"}

    other = await make_bridge(
        SKYBELL_BRIDGE_STREAMS_ICE_HOST_ADDRESSES="127.0.0.1",
        SKYBELL_BRIDGE_WEBRTC_ICE_HOST_ADDRESSES="127.0.0.2",
    )
    answer = await whep_answer(other.http_url + "api/webrtc?src=front-door")
    assert host_addresses(answer) == {"127.0.0.2"}
