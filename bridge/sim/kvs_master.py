"""The simulated doorbell's side of KVS signaling: a master that answers viewers' offers.

It mirrors what the AWS C SDK on the real doorbell does: connect as master (a presigned URL
without ``X-Amz-ClientId``), answer each viewer's offer once, accept and send trickled
candidates, and reconnect with capped backoff when the socket drops. Each viewer's messages are
handled in arrival order, but one slow viewer does not hold up another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

import aiohttp
from yarl import URL

from bridge.kvs.messages import (
    RemoteCandidate,
    SdpOffer,
    decode_received,
    encode_answer,
    encode_candidate,
)
from bridge.kvs.presign import presign_wss
from bridge.tasks import TaskSet

__all__ = ["CandidateHandler", "OfferHandler", "SimKvsMaster", "master_url_factory"]

_log = logging.getLogger(__name__)

# (viewer client id, offer SDP) -> answer SDP
OfferHandler = Callable[[str, str], Awaitable[str]]
# (viewer client id, candidate, sdpMid, sdpMLineIndex)
CandidateHandler = Callable[[str, str, str | None, int | None], Awaitable[None]]
UrlFactory = Callable[[], Awaitable[str]]


def master_url_factory(
    endpoint: str,
    channel_arn: str,
    region: str,
    credentials: Mapping[str, str],
    clock: Callable[[], datetime] | None = None,
) -> UrlFactory:
    """A factory presigning a fresh master URL per connect (each one lives only 299 s)."""

    async def make() -> str:
        return presign_wss(
            endpoint,
            channel_arn,
            None,
            region,
            credentials["AccessKeyId"],
            credentials["SecretAccessKey"],
            credentials.get("SessionToken"),
            now=clock() if clock is not None else datetime.now(UTC),
        )

    return make


class SimKvsMaster:
    """A KVS master over an injected session; ``start`` it, ``close`` it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url_factory: UrlFactory,
        on_offer: OfferHandler,
        on_candidate: CandidateHandler | None = None,
        *,
        retry_s: float = 0.2,
        max_retry_s: float = 5.0,
    ) -> None:
        self._session = session
        self._url_factory = url_factory
        self._on_offer = on_offer
        self._on_candidate = on_candidate
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._connect_count = asyncio.Condition()
        self._runner: asyncio.Task[None] | None = None
        self._handlers = TaskSet()  # one per offer or candidate being handled
        self._viewer_locks: dict[str, asyncio.Lock] = {}
        self.connects = 0  # successful connections so far; a test sees reconnects here

    @property
    def connected(self) -> bool:
        """True while the master socket is open."""
        return self._connected.is_set()

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="kvs-master")

    async def wait_connected(self, connects: int = 1) -> None:
        """Return once the socket is open and has been opened ``connects`` times in all."""
        async with self._connect_count:
            await self._connect_count.wait_for(lambda: self.connects >= connects and self.connected)

    async def send_candidate(
        self,
        viewer_client_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """Trickle one candidate to a viewer; dropped with a warning if the socket is down."""
        frame = encode_candidate(
            candidate, sdp_mid, sdp_mline_index, recipient_client_id=viewer_client_id
        )
        await self._send(frame, "candidate")

    async def close(self) -> None:
        """Stop reconnecting, cancel the handlers and close the socket; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        await self._handlers.cancel_all()
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        self._connected.clear()

    async def _send(self, frame: str, what: str) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            _log.warning("master: cannot send %s, signaling is down", what)
            return
        try:
            await ws.send_str(frame)
        except (aiohttp.ClientError, ConnectionError) as err:
            _log.warning("master: sending %s failed: %s", what, type(err).__name__)

    async def _run(self) -> None:
        delay = self._retry_s
        while True:
            try:
                url = await self._url_factory()
                ws = await self._session.ws_connect(URL(url, encoded=True), autoping=True)
            except (aiohttp.ClientError, OSError, TimeoutError) as err:
                _log.info(
                    "master: connect failed (%s); retrying in %.1fs", type(err).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry_s)
                continue
            delay = self._retry_s
            self._ws = ws
            async with self._connect_count:
                self.connects += 1
                self._connected.set()
                self._connect_count.notify_all()
            _log.info("master: signaling connected")
            try:
                await self._read(ws)
            finally:
                self._connected.clear()
                self._ws = None
            _log.info("master: signaling dropped (code %s); reconnecting", ws.close_code)
            await asyncio.sleep(self._retry_s)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    continue
                event = decode_received(msg.data)
                if isinstance(event, SdpOffer | RemoteCandidate) and event.sender_client_id:
                    self._spawn(event.sender_client_id, event)
                elif event is not None:
                    _log.debug("master: ignoring %s", type(event).__name__)
        except (aiohttp.ClientError, ConnectionError) as err:
            _log.info("master: socket error %s", type(err).__name__)

    def _spawn(self, viewer: str, event: SdpOffer | RemoteCandidate) -> None:
        self._handlers.spawn(self._handle(viewer, event))

    async def _handle(self, viewer: str, event: SdpOffer | RemoteCandidate) -> None:
        # asyncio.Lock wakes waiters in FIFO order and the tasks were created in arrival
        # order, so a viewer's candidates reach the handler only after its offer was handled.
        lock = self._viewer_locks.setdefault(viewer, asyncio.Lock())
        async with lock:
            try:
                if isinstance(event, SdpOffer):
                    answer = await self._on_offer(viewer, event.sdp)
                    await self._send(encode_answer(answer, viewer), "answer")
                elif self._on_candidate is not None:
                    await self._on_candidate(
                        viewer, event.candidate, event.sdp_mid, event.sdp_mline_index
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("master: handler failed for viewer %s", viewer)
