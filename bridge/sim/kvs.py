"""A simulated KVS WebRTC signaling service: a real aiohttp WebSocket endpoint on 127.0.0.1.

It checks the SigV4 presign the way AWS does, recomputing the signature with code written here
independently of botocore (so the bridge's presigning is really tested, not compared with
itself), tells masters from viewers by ``X-Amz-ClientId``, and relays messages between them in
the receive format. The pending TTL (10 s) and the 429 for an eleventh viewer are guesses [U].

Embedding::

    kvs = SimKvs()
    kvs.setup(app)                                  # routes under /kvs plus a shutdown hook
    fields = kvs.live_call_fields(device_id, base)  # channelARN, credentials, endpoints, signedWSS

A viewer's offer when no master is connected is held for ``pending_ttl_s`` and delivered when
the master connects. That is what KVS does: an AWS maintainer describes pending messages being
delivered "if it is within TTL", and no error comes back to the viewer. ``no_master="status"``
switches to answering with an error STATUS_RESPONSE instead, for tests of that path.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import string
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, unquote

from aiohttp import WSMsgType, web

from bridge.kvs.messages import (
    GO_AWAY,
    RECONNECT_ICE_SERVER,
    OutgoingAction,
    decode_action,
    encode_received,
    encode_status,
)
from bridge.kvs.presign import SERVICE, presign_wss
from bridge.tasks import TaskSet

__all__ = ["VIEWER_FAULTS", "SimKvs"]

# Faults armed for a channel's next viewer offer (signaling is closed once media flows, so the
# bridge only sees signaling faults while it connects): GO_AWAY instead of relaying the offer,
# or RECONNECT_ICE_SERVER / junk frames sent before relaying it.
VIEWER_FAULTS = ("go_away", "reconnect_ice", "junk")

_log = logging.getLogger(__name__)

_ALGORITHM = "AWS4-HMAC-SHA256"
_STAMP = "%Y%m%dT%H%M%SZ"
_MAX_EXPIRES = 300  # KVS refuses longer presigns
_MAX_SKEW = timedelta(minutes=5)  # AWS refuses signatures dated this far in the future
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# Frames a flaky real service has been seen to send, plus a known type with a broken payload.
_JUNK: tuple[str | bytes, ...] = (
    "",
    "   ",
    "not json at all",
    "[1, 2, 3]",
    b"\x00\x01binary",
    '{"no": "messageType"}',
    '{"messageType": "SOMETHING_NEW", "messagePayload": "e30="}',
    '{"messageType": "ICE_CANDIDATE", "messagePayload": "%%% not base64 %%%"}',
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Issued:
    access_key_id: str
    secret: str
    token: str
    expiration: datetime
    channel_arn: str


@dataclass(eq=False)
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    channel_arn: str
    client_id: str | None  # None: the master

    @property
    def role(self) -> str:
        return "master" if self.client_id is None else f"viewer {self.client_id}"


@dataclass(eq=False)
class _Channel:
    arn: str
    master: _Conn | None = None
    viewers: dict[str, _Conn] = field(default_factory=dict)
    # (loop deadline, receive-format frame) waiting for a master
    pending: deque[tuple[float, str]] = field(default_factory=deque)
    master_joined: asyncio.Event = field(default_factory=asyncio.Event)
    armed: deque[str] = field(default_factory=deque)  # VIEWER_FAULTS for the next offers


class _Refused(Exception):
    """A connection attempt to turn away before the upgrade, with the HTTP status."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class SimKvs:
    """The simulated signaling service: channels, temporary credentials, the socket, faults."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        account_id: str = "000000000000",
        base_path: str = "/kvs",
        clock: Callable[[], datetime] = _utcnow,
        idle_timeout_s: float = 600.0,
        max_life_s: float = 3600.0,
        max_viewers: int = 10,
        pending_ttl_s: float = 10.0,
        no_master: Literal["queue", "status"] = "queue",
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.base_path = base_path.rstrip("/")
        self.clock = clock
        self.idle_timeout_s = idle_timeout_s
        self.max_life_s = max_life_s
        self.max_viewers = max_viewers
        self.pending_ttl_s = pending_ttl_s
        self.no_master = no_master
        self.rejections: list[str] = []  # why each refused handshake was refused, for tests
        self._channels: dict[str, _Channel] = {}
        self._by_device: dict[str, str] = {}
        self._keys: dict[str, _Issued] = {}
        self._refuse_until: datetime | None = None
        self._tasks = TaskSet()  # delayed closes

    # ---- embedding -----------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        """The WebSocket routes (``{base_path}`` and ``{base_path}/``) to add to an app."""
        return [
            web.get(self.base_path, self._handle),
            web.get(self.base_path + "/", self._handle),
        ]

    def setup(self, app: web.Application) -> None:
        """Add the routes to ``app`` and close every socket when it shuts down."""
        app.add_routes(self.routes())
        app.on_shutdown.append(self._on_shutdown)

    def app(self) -> web.Application:
        """A standalone application serving only the signaling endpoint."""
        app = web.Application()
        self.setup(app)
        return app

    def endpoint(self, base_url: str) -> str:
        """The WSS-style endpoint for a server at ``base_url`` (``http://127.0.0.1:PORT``)."""
        return "ws" + base_url.rstrip("/").removeprefix("http") + self.base_path

    async def _on_shutdown(self, _app: web.Application) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection and cancel the sim's own timers."""
        await self._tasks.cancel_all()
        for conn in [c for ch in self._channels.values() for c in _conns(ch)]:
            await conn.ws.close(code=1001, message=b"service shutting down")

    # ---- channels and credentials --------------------------------------------------------

    def create_channel(self, device_id: str) -> str:
        """The channel ARN of a device, created on first use (like SkyBell's per-device one)."""
        arn = self._by_device.get(device_id)
        if arn is None:
            created = int(time.time() * 1000)
            arn = f"arn:aws:kinesisvideo:{self.region}:{self.account_id}:channel/{device_id}/{created}"
            self._by_device[device_id] = arn
            self._channels[arn] = _Channel(arn)
        return arn

    def issue_credentials(self, channel_arn: str, ttl_s: float = 3600.0) -> dict[str, str]:
        """Temporary credentials scoped to one channel, in the AWS STS JSON shape."""
        if channel_arn not in self._channels:
            raise KeyError(f"unknown channel {channel_arn}")
        alphabet = string.ascii_uppercase + string.digits
        key_id = "ASIA" + "".join(secrets.choice(alphabet) for _ in range(16))
        # base64 so the token holds + / =, which the presigner must percent-encode correctly.
        token = base64.b64encode(secrets.token_bytes(96)).decode()
        issued = _Issued(
            access_key_id=key_id,
            secret=secrets.token_urlsafe(30),
            token=token,
            expiration=self.clock() + timedelta(seconds=ttl_s),
            channel_arn=channel_arn,
        )
        self._keys[key_id] = issued
        return {
            "AccessKeyId": key_id,
            "SecretAccessKey": issued.secret,
            "SessionToken": token,
            "Expiration": issued.expiration.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }

    def live_call_fields(
        self,
        device_id: str,
        base_url: str,
        client_id: str | None = None,
        *,
        ttl_s: float = 3600.0,
        bare_signed_wss: bool = False,
    ) -> dict[str, Any]:
        """The KVS part of a live-call response: endpoints, channel, credentials, signedWSS.

        ``signedWSS`` is signed for ``client_id`` (a generated one if ``None``). With
        ``bare_signed_wss`` it carries neither channel nor client id, like the documented sample,
        so it is refused and the bridge has to presign for itself.
        """
        arn = self.create_channel(device_id)
        creds = self.issue_credentials(arn, ttl_s)
        endpoint = self.endpoint(base_url)
        viewer = client_id or f"VIEWER-{secrets.token_hex(8)}"
        signed = presign_wss(
            endpoint,
            "" if bare_signed_wss else arn,
            None if bare_signed_wss else viewer,
            self.region,
            creds["AccessKeyId"],
            creds["SecretAccessKey"],
            creds["SessionToken"],
            now=self.clock(),
        )
        if bare_signed_wss:
            # Dropping the (empty, signed) parameter also breaks the signature; the real bare
            # URL is unusable too, so the bridge must never try it.
            signed = signed.replace("X-Amz-ChannelARN=&", "", 1)
        return {
            "endpoints": [
                {"Protocol": "HTTPS", "ResourceEndpoint": base_url.rstrip("/") + self.base_path},
                {"Protocol": "WSS", "ResourceEndpoint": endpoint},
            ],
            "channelARN": arn,
            "credentials": creds,
            "aws_region": self.region,
            "signedWSS": signed,
        }

    # ---- state, for tests and the embedding sim -----------------------------------------

    def has_master(self, channel_arn: str) -> bool:
        """True while a master is connected to the channel."""
        channel = self._channels.get(channel_arn)
        return channel is not None and channel.master is not None

    def viewer_ids(self, channel_arn: str) -> list[str]:
        """Client ids of the viewers connected to the channel."""
        channel = self._channels.get(channel_arn)
        return list(channel.viewers) if channel else []

    async def wait_master(self, channel_arn: str) -> None:
        """Return once a master is connected to the channel."""
        await self._channels[channel_arn].master_joined.wait()

    # ---- fault switches -------------------------------------------------------------------

    async def send_go_away(self, channel_arn: str, close_after_s: float | None = None) -> int:
        """Send GO_AWAY to every viewer of the channel; optionally close them afterwards."""
        viewers = list(self._channels[channel_arn].viewers.values())
        frame = json.dumps({"messageType": GO_AWAY})
        for conn in viewers:
            await _send(conn, frame)
        if close_after_s is not None:
            self._tasks.spawn(self._close_later(viewers, close_after_s))
        return len(viewers)

    async def _close_later(self, conns: list[_Conn], delay: float) -> None:
        await asyncio.sleep(delay)
        for conn in conns:
            await conn.ws.close(code=1001, message=b"going away")

    async def send_junk(self, channel_arn: str, frames: Iterable[str | bytes] = _JUNK) -> int:
        """Send empty, non-JSON, binary and malformed frames to every viewer of the channel."""
        viewers = list(self._channels[channel_arn].viewers.values())
        frames = list(frames)
        for conn in viewers:
            for frame in frames:
                await _send(conn, frame)
        return len(viewers)

    def drop_viewer(self, channel_arn: str, client_id: str) -> bool:
        """Cut a viewer's TCP connection without a close handshake."""
        conn = self._channels[channel_arn].viewers.get(client_id)
        if conn is None:
            return False
        _abort(conn)
        return True

    def drop_master(self, channel_arn: str) -> bool:
        """Cut the master's TCP connection without a close handshake."""
        conn = self._channels[channel_arn].master
        if conn is None:
            return False
        _abort(conn)
        return True

    def arm_viewer_fault(self, channel_arn: str, fault: str) -> None:
        """Break the channel's next viewer offer with one of VIEWER_FAULTS."""
        if fault not in VIEWER_FAULTS:
            raise ValueError(f"unknown viewer fault {fault!r}")
        self._channels[channel_arn].armed.append(fault)

    def expire_credentials(self, channel_arn: str) -> int:
        """Make every temporary key issued for the channel expire now; returns how many."""
        now = self.clock()
        expired = [k for k, v in self._keys.items() if v.channel_arn == channel_arn]
        for key in expired:
            self._keys[key] = dataclasses.replace(self._keys[key], expiration=now)
        return len(expired)

    def refuse_connections(self, seconds: float) -> None:
        """Answer every handshake with 403 for ``seconds`` of the injected clock (0 lifts it)."""
        self._refuse_until = self.clock() + timedelta(seconds=seconds) if seconds > 0 else None

    # ---- the WebSocket endpoint -----------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            channel, client_id = self._authorize(request)
        except _Refused as refusal:
            self.rejections.append(refusal.reason)
            _log.info("refused signaling handshake (%d): %s", refusal.status, refusal.reason)
            body = json.dumps({"message": refusal.reason})
            return web.Response(status=refusal.status, text=body, content_type="application/json")
        ws = web.WebSocketResponse(autoping=True, max_msg_size=64 * 1024)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="expected a WebSocket upgrade")
        await ws.prepare(request)
        conn = _Conn(ws, request, channel.arn, client_id)
        await self._join(channel, conn)
        try:
            await self._serve(channel, conn)
        finally:
            self._leave(channel, conn)
        return ws

    def _authorize(self, request: web.Request) -> tuple[_Channel, str | None]:
        now = self.clock()
        if self._refuse_until is not None and now < self._refuse_until:
            raise _Refused("connections are being refused (fault switch)")
        params, issued = _verify_presign(request, self._keys, self.region, now)
        arn = params.get("X-Amz-ChannelARN", "")
        channel = self._channels.get(arn)
        if channel is None:
            raise _Refused("unknown channel")
        if issued.channel_arn != arn:
            raise _Refused("credentials are not for this channel")
        client_id = params.get("X-Amz-ClientId")
        if client_id is not None:
            if not client_id or len(client_id) > 256:
                raise _Refused("bad client id", status=400)
            full = len(channel.viewers) >= self.max_viewers
            if full and client_id not in channel.viewers:
                raise _Refused("viewer limit reached for this channel", status=429)
        return channel, client_id

    async def _join(self, channel: _Channel, conn: _Conn) -> None:
        if conn.client_id is None:
            old, channel.master = channel.master, conn
            channel.master_joined.set()
        else:
            old = channel.viewers.get(conn.client_id)
            channel.viewers[conn.client_id] = conn
        if old is not None:
            # KVS keeps one connection per role and client id; the newer one wins.
            await old.ws.close(code=1000, message=b"replaced by a newer connection")
        _log.info("signaling: %s joined %s", conn.role, channel.arn)
        if conn.client_id is None:
            await self._flush_pending(channel, conn)

    def _leave(self, channel: _Channel, conn: _Conn) -> None:
        if conn.client_id is None:
            if channel.master is conn:
                channel.master = None
                channel.master_joined.clear()
        elif channel.viewers.get(conn.client_id) is conn:
            del channel.viewers[conn.client_id]
        _log.info("signaling: %s left %s (code %s)", conn.role, channel.arn, conn.ws.close_code)

    async def _flush_pending(self, channel: _Channel, master: _Conn) -> None:
        now = asyncio.get_running_loop().time()
        while channel.pending:
            deadline, frame = channel.pending.popleft()
            if deadline >= now:
                await _send(master, frame)

    async def _serve(self, channel: _Channel, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        end_of_life = loop.time() + self.max_life_s
        while True:
            # Idle means nothing from this client for idle_timeout_s; KVS also ends every
            # connection after an hour, whatever it is doing.
            left = end_of_life - loop.time()
            try:
                msg = await conn.ws.receive(timeout=max(0.0, min(self.idle_timeout_s, left)))
            except TimeoutError:
                why = b"idle timeout" if left > self.idle_timeout_s else b"maximum connection life"
                await conn.ws.close(code=1000, message=why)
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if msg.type == WSMsgType.ERROR:
                _log.info("signaling: %s socket error: %r", conn.role, conn.ws.exception())
                return
            if msg.type == WSMsgType.TEXT:
                await self._relay(channel, conn, msg.data)
            else:
                await _send(conn, _invalid(None, "binary frames are not accepted"))

    async def _relay(self, channel: _Channel, sender: _Conn, frame: str) -> None:
        try:
            action = decode_action(frame)
        except ValueError as err:
            await _send(sender, _invalid(_correlation_of(frame), str(err)))
            return
        if sender.client_id is not None:
            await self._viewer_to_master(channel, sender.client_id, sender, action)
            return
        recipient = channel.viewers.get(action.recipient_client_id or "")
        if recipient is None:
            await _send(sender, _invalid(action.correlation_id, "recipient is not connected"))
            return
        await _send(recipient, encode_received(action.action, action.message_payload, None))

    async def _viewer_to_master(
        self, channel: _Channel, client_id: str, sender: _Conn, action: OutgoingAction
    ) -> None:
        # A viewer never names a recipient; any recipientClientId it sends is ignored.
        relayed = encode_received(action.action, action.message_payload, client_id)
        if action.action == "SDP_OFFER" and channel.armed:
            fault = channel.armed.popleft()
            _log.info("signaling: fault %s on the offer of %s", fault, client_id)
            if fault == "go_away":
                await _send(sender, json.dumps({"messageType": GO_AWAY}))
                self._tasks.spawn(self._close_later([sender], 0.2))
                return
            if fault == "reconnect_ice":
                await _send(sender, json.dumps({"messageType": RECONNECT_ICE_SERVER}))
            else:
                for frame in _JUNK:
                    await _send(sender, frame)
        if channel.master is not None:
            await _send(channel.master, relayed)
        elif self.no_master == "status":
            await _send(
                sender,
                encode_status(action.correlation_id, "NoMasterConnected", "404", "no master"),
            )
        else:
            deadline = asyncio.get_running_loop().time() + self.pending_ttl_s
            channel.pending.append((deadline, relayed))


# ---- helpers ---------------------------------------------------------------------------------


def _conns(channel: _Channel) -> list[_Conn]:
    master = [channel.master] if channel.master is not None else []
    return master + list(channel.viewers.values())


async def _send(conn: _Conn, frame: str | bytes) -> None:
    # A peer that vanished mid-relay is that peer's problem, not the sender's.
    if conn.ws.closed:
        return
    try:
        if isinstance(frame, bytes):
            await conn.ws.send_bytes(frame)
        else:
            await conn.ws.send_str(frame)
    except ConnectionError:
        _log.debug("signaling: %s vanished while we sent to it", conn.role)


def _abort(conn: _Conn) -> None:
    transport = conn.request.transport
    if transport is not None:
        transport.close()


def _invalid(correlation_id: str | None, description: str) -> str:
    return encode_status(correlation_id, "InvalidArgumentException", "400", description)


def _correlation_of(frame: str) -> str | None:
    try:
        value = json.loads(frame)
    except ValueError:
        return None
    found = value.get("correlationId") if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


# ---- SigV4 presign verification (an independent re-implementation of what AWS checks) ------


def _query_pairs(request: web.Request) -> list[tuple[str, str]]:
    # The raw query, not aiohttp's parsed one: the signature covers the exact parameters, and
    # aiohttp's parser would turn "+" into a space.
    raw = request.raw_path.partition("?")[2]
    pairs = []
    for item in raw.split("&"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def _verify_presign(
    request: web.Request, keys: dict[str, _Issued], region: str, now: datetime
) -> tuple[dict[str, str], _Issued]:
    pairs = _query_pairs(request)
    params = dict(pairs)
    if len(params) != len(pairs):
        raise _Refused("repeated query parameter")
    required = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires")
    missing = [p for p in (*required, "X-Amz-SignedHeaders", "X-Amz-Signature") if p not in params]
    if missing:
        raise _Refused(f"missing {', '.join(missing)}")
    if params["X-Amz-Algorithm"] != _ALGORITHM:
        raise _Refused("unsupported algorithm")
    key_id, _, scope = params["X-Amz-Credential"].partition("/")
    issued = keys.get(key_id)
    if issued is None:
        raise _Refused("unknown access key")
    stamp = params["X-Amz-Date"]
    if scope != f"{stamp[:8]}/{region}/{SERVICE}/aws4_request":
        raise _Refused("credential scope does not match date, region or service")
    try:
        signed_at = datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC)
        expires = int(params["X-Amz-Expires"])
    except ValueError:
        raise _Refused("malformed X-Amz-Date or X-Amz-Expires") from None
    if not 1 <= expires <= _MAX_EXPIRES:
        raise _Refused(f"X-Amz-Expires {expires} is over-long (max {_MAX_EXPIRES})")
    if now > signed_at + timedelta(seconds=expires):
        raise _Refused("signature expired")
    if signed_at > now + _MAX_SKEW:
        raise _Refused("signature is dated in the future")
    if now >= issued.expiration:
        raise _Refused("temporary credentials expired")
    if params.get("X-Amz-Security-Token") != issued.token:
        raise _Refused("security token is missing or invalid")
    if params["X-Amz-SignedHeaders"] != "host":
        raise _Refused("only the host header may be signed")
    expected = _signature(request, pairs, issued.secret, stamp, scope)
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        raise _Refused("signature does not match")
    return params, issued


def _signature(
    request: web.Request, pairs: list[tuple[str, str]], secret: str, stamp: str, scope: str
) -> str:
    def enc(text: str) -> str:
        return quote(text, safe="-_.~")

    query = "&".join(
        f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in pairs if k != "X-Amz-Signature")
    )
    path = quote(unquote(request.raw_path.partition("?")[0]) or "/", safe="/~")
    host = request.headers.get("Host", "").lower()
    canonical = f"GET\n{path}\n{query}\nhost:{host}\n\nhost\n{_EMPTY_SHA256}"
    to_sign = f"{_ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret}".encode()
    for part in scope.split("/")[:4]:
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
