"""One SkyBell live session: cloud live call → KVS signaling as viewer → aiortc peer → packets.

This is the hub's ``Connector`` for a doorbell. Every way a session can die surfaces either as an
exception from ``open_live_call`` or as the end (or an exception) of ``packets()``; the hub
decides whether and when to try again. Closing the session ends the cloud live call, so the
doorbell stops streaming and its battery is spared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from bridge.errors import BridgeError
from bridge.kvs import (
    GoAwayNotice,
    KvsViewer,
    RemoteCandidate,
    SignalingAuthError,
    choose_signed_url,
    presign_wss,
)
from bridge.kvs.messages import Closed
from bridge.media.keyframes import KeyframeKind
from bridge.media.packet import MediaPacket
from bridge.media.talk_track import TalkTrack
from bridge.media.webrtc_source import WebRtcSource, choose_ice_servers
from bridge.skybell import LiveCall, SkyBellClient

__all__ = ["CloudLiveCall", "LiveOptions", "open_live_call"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveOptions:
    """Tunables of one live session."""

    answer_timeout: float = 10.0
    connect_timeout: float = 10.0


class CloudLiveCall:
    """A running live session; implements the hub's ``LiveCall`` protocol."""

    def __init__(
        self,
        client: SkyBellClient,
        call: LiveCall,
        viewer: KvsViewer,
        source: WebRtcSource,
        call_at: float,
    ) -> None:
        self.call = call
        self.call_at = call_at  # monotonic time the live-call response arrived
        self.started = time.monotonic()
        self.first_packet_at: float | None = None
        self._client = client
        self._viewer: KvsViewer | None = viewer
        self._source = source
        self._signaling_task = asyncio.get_running_loop().create_task(
            self._follow_signaling(viewer), name=f"kvs {call.device_id[:8]}"
        )
        self._closed = False

    @property
    def codecs(self) -> dict[str, str]:
        """The negotiated codecs by kind."""
        return self._source.negotiated_codecs()

    async def packets(self) -> AsyncIterator[MediaPacket]:
        """Encoded packets until the peer connection ends."""
        async for packet in self._source.packets():
            if self.first_packet_at is None:
                self.first_packet_at = time.monotonic()
                # Media flows: signaling is no longer needed (go2rtc closes it too), and an
                # open socket would only be cut by KVS after 10 idle minutes anyway.
                await self._close_signaling()
            yield packet

    @property
    def talk_track(self) -> TalkTrack | None:
        """What the doorbell hears (``bridge.talk``); None when it takes no audio."""
        return self._source.talk_track

    @property
    def talk_refusal(self) -> str:
        """Why there is no talk track; empty when there is one."""
        return self._source.talk_refusal

    def request_keyframe(self, kind: KeyframeKind = "pli") -> None:
        """Send a PLI or FIR to the doorbell."""
        self._source.request_keyframe(kind)

    async def _follow_signaling(self, viewer: KvsViewer) -> None:
        """Apply candidates trickled after the answer until signaling is closed."""
        async for event in viewer:
            if isinstance(event, RemoteCandidate):
                try:
                    await self._source.add_remote_candidate(
                        event.candidate, event.sdp_mid, event.sdp_mline_index
                    )
                except BridgeError as err:
                    _LOGGER.debug("ignoring an unusable remote candidate: %s", err)
            elif isinstance(event, GoAwayNotice) and self.first_packet_at is None:
                # Before media flows, GO_AWAY means this attempt will not work out.
                _LOGGER.info("signaling sent GO_AWAY before media; restarting the session")
                await self._source.close()
                return
            elif isinstance(event, Closed):
                return

    async def _close_signaling(self) -> None:
        viewer, self._viewer = self._viewer, None
        if viewer is not None:
            await viewer.close()

    async def close(self) -> None:
        """End the peer, the signaling socket and the cloud live call; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._signaling_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._signaling_task
        await self._close_signaling()
        await self._source.close()
        try:
            await self._client.stop_live_call(self.call.device_id)
        except BridgeError as err:
            _LOGGER.info("could not end the cloud live call: %s", err)


async def open_live_call(
    client: SkyBellClient,
    http: aiohttp.ClientSession,
    device_id: str,
    *,
    options: LiveOptions | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ice_host_addresses: Sequence[str] | None = None,
) -> CloudLiveCall:
    """Start a live call and negotiate WebRTC with the doorbell; media may not flow yet."""
    options = options or LiveOptions()
    call = await client.start_live_call(device_id)
    call_at = time.monotonic()
    viewer = KvsViewer(http)
    source = WebRtcSource(
        choose_ice_servers([s.as_dict() for s in call.ice_servers]),
        host_addresses=ice_host_addresses,
    )
    try:
        await _connect_signaling(viewer, call, now)
        offer = await source.create_offer()
        await viewer.send_offer(offer)
        answer = await viewer.wait_answer(options.answer_timeout)
        await source.set_answer(answer.sdp)
        for cand in answer.candidates:
            await source.add_remote_candidate(cand.candidate, cand.sdp_mid, cand.sdp_mline_index)
    except BaseException:
        await viewer.close()
        await source.close()
        with contextlib.suppress(BridgeError):
            await client.stop_live_call(device_id)
        raise
    return CloudLiveCall(client, call, viewer, source, call_at)


async def _connect_signaling(
    viewer: KvsViewer, call: LiveCall, now: Callable[[], datetime]
) -> None:
    creds = call.credentials
    signed = call.signed_wss.reveal() if call.signed_wss else None
    url = choose_signed_url(
        signed, call.wss_endpoint, call.channel_arn, call.client_id, call.region, creds, now()
    )
    try:
        await viewer.connect(url)
    except SignalingAuthError:
        if url != signed:
            raise
        # The cloud's URL was refused (clock skew, or signed for something else): sign our own.
        _LOGGER.info("the cloud's presigned signaling URL was refused; presigning it ourselves")
        await viewer.connect(
            presign_wss(
                call.wss_endpoint,
                call.channel_arn,
                call.client_id,
                call.region,
                creds.access_key_id,
                creds.secret_access_key.reveal(),
                creds.session_token.reveal() if creds.session_token else None,
                now=now(),
            )
        )
