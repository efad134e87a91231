"""The bridge's side of KVS signaling: a viewer that offers, and hears the doorbell answer.

One ``KvsViewer`` is one WebSocket connection. It lives only until the peer connection is up;
then the caller closes it (as go2rtc does) and media keeps flowing. aiohttp's exceptions stop at
this module: callers see ``SignalingAuthError`` (presign again) or a transient ``SignalingError``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
from yarl import URL

from bridge.kvs.errors import (
    GoAway,
    SignalingAuthError,
    SignalingClosed,
    SignalingError,
    SignalingStatusError,
    SignalingTimeout,
)
from bridge.kvs.messages import (
    SDP_ANSWER,
    Closed,
    GoAwayNotice,
    Malformed,
    RemoteCandidate,
    SdpAnswer,
    StatusResponse,
    ViewerEvent,
    decode_received,
    encode_candidate,
    encode_offer,
)
from bridge.kvs.presign import KvsCredentials, describe_url, is_fresh, presign_wss, url_param

__all__ = ["Answer", "KvsViewer", "choose_signed_url", "new_client_id"]

_log = logging.getLogger(__name__)

# A frame is at most a 10 KB payload plus a small envelope; anything far bigger is not signaling.
_MAX_FRAME = 64 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """The master's answer and the candidates it trickled up to (and just after) it."""

    sdp: str
    candidates: list[RemoteCandidate] = field(default_factory=list)


def new_client_id(prefix: str = "skybell-bridge") -> str:
    """A fresh viewer client id; KVS allows ``[a-zA-Z0-9_.-]``, up to 256 characters."""
    return f"{prefix}-{uuid.uuid4().hex}"


def choose_signed_url(
    signed_wss: str | None,
    endpoint: str,
    channel_arn: str,
    client_id: str | None,
    region: str,
    creds: KvsCredentials,
    now: datetime,
) -> str:
    """The cloud's ``signedWSS`` while it is fresh and names our channel and role, else our own.

    SkyBell's ``signedWSS`` has been seen without ``X-Amz-ChannelARN`` and ``X-Amz-ClientId``.
    Those are inside the signature, so they cannot be added afterwards: such a URL is useless
    and we presign the endpoint ourselves with the temporary credentials.
    """
    if signed_wss and _usable(signed_wss, channel_arn, client_id, now):
        _log.debug("using the cloud's presigned URL for %s", describe_url(signed_wss))
        return signed_wss
    if creds.expired(now):
        raise SignalingAuthError("the live call's temporary credentials have expired")
    return presign_wss(
        endpoint,
        channel_arn,
        client_id,
        region,
        creds.access_key_id,
        creds.secret_access_key.reveal(),
        creds.session_token.reveal() if creds.session_token else None,
        now=now,
    )


def _usable(signed_wss: str, channel_arn: str, client_id: str | None, now: datetime) -> bool:
    if not is_fresh(signed_wss, now):
        return False
    if url_param(signed_wss, "X-Amz-ChannelARN") != channel_arn:
        return False
    # A URL signed for the other role would connect us as master (or as a viewer): never use it.
    return (url_param(signed_wss, "X-Amz-ClientId") is None) == (client_id is None)


class KvsViewer:
    """A KVS signaling viewer over an injected ``aiohttp.ClientSession``.

    Received messages become typed events, read with ``next_event``, ``async for`` or
    ``wait_answer``. The last event is always ``Closed``.
    """

    def __init__(self, session: aiohttp.ClientSession, *, handshake_timeout: float = 5.0) -> None:
        self._session = session
        self._handshake_timeout = handshake_timeout
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._events: deque[ViewerEvent] = deque()
        self._wakeup = asyncio.Event()
        self._final: Closed | None = None
        self._target = "?"

    @property
    def connected(self) -> bool:
        """True while the socket is open and not closed by us."""
        return self._ws is not None and not self._ws.closed and self._final is None

    async def connect(self, url: str) -> None:
        """Open the socket with an already presigned URL."""
        if self._ws is not None or self._final is not None:
            raise RuntimeError("a KvsViewer connects once; make a new one to reconnect")
        self._target = describe_url(url)
        try:
            async with asyncio.timeout(self._handshake_timeout):
                # encoded=True: the URL must go out byte for byte as signed; re-quoting the
                # query would change the canonical request the service checks.
                ws = await self._session.ws_connect(
                    URL(url, encoded=True), max_msg_size=_MAX_FRAME, autoping=True
                )
        except aiohttp.WSServerHandshakeError as err:
            if err.status == 403:
                raise SignalingAuthError(
                    "signaling service refused the presigned URL", status=403, path=self._target
                ) from err
            raise SignalingError(
                "signaling handshake refused", status=err.status, path=self._target
            ) from err
        except TimeoutError as err:
            raise SignalingTimeout("signaling handshake timed out", path=self._target) from err
        except (aiohttp.ClientError, OSError) as err:
            raise SignalingError(
                f"cannot reach the signaling service ({type(err).__name__})", path=self._target
            ) from err
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws), name="kvs-viewer-reader")
        _log.info("signaling connected to %s", self._target)

    async def send_offer(self, sdp: str, correlation_id: str | None = None) -> None:
        """Send the SDP offer; ``PayloadTooLarge`` if it would exceed the service's limit."""
        await self._send(encode_offer(sdp, correlation_id))

    async def send_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """Trickle one local ICE candidate to the master."""
        await self._send(encode_candidate(candidate, sdp_mid, sdp_mline_index))

    async def _send(self, frame: str) -> None:
        ws = self._ws
        if ws is None or ws.closed or self._final is not None:
            raise SignalingClosed("signaling socket is not open", path=self._target)
        try:
            await ws.send_str(frame)
        except (aiohttp.ClientError, ConnectionError) as err:
            raise SignalingClosed(
                "signaling socket closed while sending", path=self._target
            ) from err

    # Timeouts are parameters so that expiry surfaces as the bridge's SignalingTimeout; a
    # caller's own asyncio.timeout would raise a bare TimeoutError instead.
    async def next_event(self, timeout: float | None = None) -> ViewerEvent:
        """The next event; after the socket is gone, ``Closed`` again and again."""
        try:
            async with asyncio.timeout(timeout):
                while not self._events:
                    if self._final is not None:
                        return self._final
                    self._wakeup.clear()
                    await self._wakeup.wait()
        except TimeoutError as err:
            raise SignalingTimeout("no signaling message in time", path=self._target) from err
        event = self._events.popleft()
        if isinstance(event, Closed):
            self._final = event
        return event

    async def __aiter__(self) -> AsyncIterator[ViewerEvent]:
        """Every event up to and including ``Closed``."""
        while True:
            event = await self.next_event()
            yield event
            if isinstance(event, Closed):
                return

    async def wait_answer(self, timeout: float = 10.0) -> Answer:
        """Wait for SDP_ANSWER, collecting candidates trickled before it and already queued after.

        Later candidates keep arriving through ``next_event``. An error STATUS_RESPONSE, GO_AWAY,
        a malformed answer or the socket closing ends the wait with the matching error.
        """
        candidates: list[RemoteCandidate] = []
        try:
            async with asyncio.timeout(timeout):
                answer = await self._until_answer(candidates)
        except TimeoutError as err:
            raise SignalingTimeout("no SDP answer in time", path=self._target) from err
        while self._events:
            head = self._events[0]
            if not isinstance(head, RemoteCandidate):
                break
            self._events.popleft()
            candidates.append(head)
        return Answer(answer.sdp, candidates)

    async def _until_answer(self, candidates: list[RemoteCandidate]) -> SdpAnswer:
        while True:
            event = await self.next_event()
            if isinstance(event, SdpAnswer):
                return event
            if isinstance(event, RemoteCandidate):
                candidates.append(event)
            elif isinstance(event, StatusResponse) and event.is_error:
                raise SignalingStatusError(
                    event.description,
                    correlation_id=event.correlation_id,
                    error_type=event.error_type,
                    status_code=event.status_code,
                )
            elif isinstance(event, GoAwayNotice):
                raise GoAway("signaling service sent GO_AWAY", path=self._target)
            elif isinstance(event, Closed):
                raise SignalingClosed(f"signaling closed: {event.reason}", path=self._target)
            elif isinstance(event, Malformed) and event.message_type == SDP_ANSWER:
                raise SignalingError(f"malformed SDP answer: {event.reason}", path=self._target)
            else:
                _log.debug("ignoring %s while waiting for the answer", type(event).__name__)

    async def close(self) -> None:
        """Close the socket and stop the reader; safe to call any number of times."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()
            _log.info("signaling closed by us (%s)", self._target)
        if self._final is None and not any(isinstance(e, Closed) for e in self._events):
            self._push(Closed("closed by us", ws.close_code if ws is not None else None))

    def _push(self, event: ViewerEvent) -> None:
        self._events.append(event)
        self._wakeup.set()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = "closed by the service"
        try:
            async for msg in ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    event = decode_received(msg.data)
                    if event is not None:
                        self._push(event)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    reason = f"socket error ({type(ws.exception()).__name__})"
                    break
        except (aiohttp.ClientError, ConnectionError) as err:
            reason = f"socket error ({type(err).__name__})"
        _log.info("signaling to %s ended: %s (code %s)", self._target, reason, ws.close_code)
        self._push(Closed(reason, ws.close_code))
