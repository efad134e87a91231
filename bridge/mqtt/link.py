"""One connection to the MQTT broker that never makes the rest of the bridge wait.

``publish`` only queues: live view, recording and events go on whatever the broker does. A task
owns the connection: it connects (with the will message: the status topic, ``offline``,
retained), publishes ``online``, subscribes to the command topics, clears stale retained
messages it owns, then sends the queue. When the connection drops it reconnects with capped
exponential backoff, logging "unavailable" once and "back" once.

Retained messages (discovery, states) are kept here too, the latest per topic: every connect
republishes them all, so a broker that restarted empty, or missed updates while away, ends up
with the current picture. Meanwhile only what the cache cannot replay waits in the queue
(events, and empty payloads that clear a retained topic); the queue is bounded and its oldest
entries are dropped first, counted.

"Owned" patterns are wildcard topics only this bridge publishes retained messages under (its
Home Assistant discovery topics). On each connect every retained message found there that the
cache does not hold is cleared: an entity from an earlier run or an older version disappears.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict

import aiomqtt

from bridge.mqtt.options import MqttOptions, broker_address

__all__ = ["LinkStats", "MessageHandler", "MqttLink"]

_LOGGER = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, bool], None]
"""Called with (topic, payload, retained) for each message on a subscribed topic."""

_QOS = 1  # at least once: a lost press or a lost state would leave Home Assistant wrong
_SWEEP_TIMEOUT = 5.0  # the broker sends retained messages at once; this is a dead broker
_CLOSE_TIMEOUT = 3.0
# CONNACK codes for refused credentials: MQTT 3.1.1 (4, 5) and their MQTT 5 reason codes.
_AUTH_CODES = frozenset({4, 5, 134, 135})


class LinkStats(TypedDict):
    """The connection for ``/metrics`` and the status page."""

    connected: int  # 1 or 0
    dropped: int  # queued messages dropped, oldest first, while the broker was away
    queued: int


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    retain: bool


class _Sweep:
    """Retained topics seen under the owned patterns until the marker comes back."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.found: set[str] = set()
        self.done = asyncio.Event()


class MqttLink:
    """The broker connection: a bounded outgoing queue, retained cache, reconnects."""

    def __init__(
        self,
        options: MqttOptions,
        *,
        status_topic: str,
        subscriptions: Sequence[str],
        on_message: MessageHandler,
        on_connect: Callable[[], None] | None = None,
        owned: Sequence[str] = (),
        client_prefix: str = "skybell-bridge",
    ) -> None:
        self.options = options
        self.address = broker_address(options.url)
        self.url = (
            f"{'mqtts' if self.address.tls else 'mqtt'}://{self.address.host}:{self.address.port}"
        )
        self.status_topic = status_topic
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._on_connect = on_connect
        self._owned = list(owned)
        # Random per run: a fixed id would let a restarted bridge take over its own old session,
        # and the broker would then publish the old session's will ("offline") after our online.
        self.client_id = f"{client_prefix}-{secrets.token_hex(4)}"
        self.dropped = 0
        self.connected = False
        self._queue: deque[_Outgoing] = deque()
        self._retained: dict[str, bytes] = {}
        self._wakeup = asyncio.Event()
        self._stop = asyncio.Event()
        self._sweep: _Sweep | None = None
        self._task: asyncio.Task[None] | None = None
        self._down_logged = False
        self._ever_connected = False
        self._closed = False

    # -- publishing (never waits) --------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        """Queue a message. Retained ones also replace the topic's cached value; an empty
        retained payload clears the topic on the broker."""
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if retain:
            if data:
                self._retained[topic] = data
            else:
                self._retained.pop(topic, None)
        if retain and data and not self.connected:
            return  # the cache is republished on connect: queueing it too would only cost room
        self._put(_Outgoing(topic, data, retain))

    def retained(self, topic: str) -> bytes | None:
        """The latest retained payload published on ``topic`` (None: none, or cleared)."""
        return self._retained.get(topic)

    def republish(self) -> None:
        """Send every retained message again (Home Assistant restarted and asks for them)."""
        if self.connected:
            self._queue.extend(_Outgoing(t, p, True) for t, p in self._retained.items())
            self._wakeup.set()

    def _put(self, message: _Outgoing) -> None:
        while len(self._queue) >= self.options.queue_size:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                _LOGGER.warning(
                    "MQTT: %d message(s) dropped, oldest first: the broker is away or too slow",
                    self.dropped,
                )
        self._queue.append(message)
        self._wakeup.set()

    def stats(self) -> LinkStats:
        """Connected (1/0), messages dropped, messages waiting."""
        return {
            "connected": int(self.connected),
            "dropped": self.dropped,
            "queued": len(self._queue),
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt")

    async def close(self) -> None:
        """Send what is queued, say ``offline`` (retained), disconnect, stop; safe to call
        twice. Gives up after a few seconds on a broker that does not answer."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        task = self._task
        if task is not None:
            # The connection ends itself (an orderly DISCONNECT: the broker sends no will);
            # a broker that hangs, or a connect under way, is cut short.
            _, pending = await asyncio.wait({task}, timeout=_CLOSE_TIMEOUT)
            if pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    async def _run(self) -> None:
        delay = self.options.backoff
        tls = await asyncio.to_thread(_tls_context) if self.address.tls else None
        while not self._stop.is_set():
            try:
                async with self._make_client(tls) as client:
                    delay = self.options.backoff
                    await self._session(client)
            except aiomqtt.MqttCodeError as err:
                self._went_down(err, refused=_code(err) in _AUTH_CODES)
            except aiomqtt.MqttError as err:
                # Also what a cancelled disconnect can turn into: closing is checked below.
                self._went_down(err, refused=False)
            finally:
                self.connected = False
            if self._stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            delay = min(delay * 2, self.options.max_backoff)

    def _make_client(self, tls: ssl.SSLContext | None) -> aiomqtt.Client:
        opts = self.options
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=opts.username or None,
            password=opts.password.reveal() if opts.password is not None else None,
            identifier=self.client_id,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=_QOS, retain=True),
            keepalive=opts.keepalive,
            timeout=10.0,
            tls_context=tls,
        )

    def _went_down(self, err: aiomqtt.MqttError, *, refused: bool) -> None:
        if self._down_logged or self._closed:
            _LOGGER.debug("MQTT: broker %s still unavailable: %s", self.url, err)
            return
        self._down_logged = True
        if refused:
            user = self.options.username or "(none)"
            _LOGGER.error(
                "MQTT: broker %s refused the credentials (user %s): %s; check mqtt.username "
                "and mqtt.password_file. Retrying every %g s at most; the bridge runs on",
                self.url,
                user,
                err,
                self.options.max_backoff,
            )
        else:
            _LOGGER.warning(
                "MQTT: broker %s unavailable: %s; retrying every %g s at most, messages are "
                "queued meanwhile",
                self.url,
                err or type(err).__name__,
                self.options.max_backoff,
            )

    # -- one connection ------------------------------------------------------------------------

    async def _session(self, client: aiomqtt.Client) -> None:
        if self._down_logged:
            _LOGGER.info("MQTT: broker %s back", self.url)
        elif not self._ever_connected:
            _LOGGER.info("MQTT: connected to %s", self.url)
        self._down_logged = False
        self._ever_connected = True
        receiver = asyncio.get_running_loop().create_task(self._receive(client), name="mqtt-in")
        try:
            await client.publish(self.status_topic, b"online", qos=_QOS, retain=True)
            for pattern in self._subscriptions:
                await client.subscribe(pattern, qos=_QOS)
            await self._clear_stale(client)
            if self._on_connect is not None:
                self._on_connect()  # last word on retained values before they are replayed
            self._replay()
            await self._send(client, receiver)
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)

    def _replay(self) -> None:
        # From here on retained messages are queued as they come, after this snapshot of the
        # cache; queued retained messages are older than the cache's and go.
        self.connected = True
        rest = [m for m in self._queue if not (m.retain and m.payload)]
        self._queue = deque(_Outgoing(t, p, True) for t, p in self._retained.items())
        self._queue.extend(rest)
        self._wakeup.set()

    async def _send(self, client: aiomqtt.Client, receiver: asyncio.Task[None]) -> None:
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                if not self._queue:
                    if stop.done():
                        # What was queued is out; an orderly stop sends no will, so say it.
                        await client.publish(self.status_topic, b"offline", qos=_QOS, retain=True)
                        return
                    self._wakeup.clear()
                    waiter = asyncio.ensure_future(self._wakeup.wait())
                    try:
                        await asyncio.wait(
                            (waiter, receiver, stop), return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        waiter.cancel()
                    if receiver.done():
                        receiver.result()  # the connection's error, if it has one
                        raise aiomqtt.MqttError("the broker closed the connection")
                    continue
                message = self._queue.popleft()
                try:
                    await client.publish(
                        message.topic, message.payload, qos=_QOS, retain=message.retain
                    )
                except aiomqtt.MqttError:
                    # Not lost: retained values are replayed from the cache; the rest goes back.
                    if not (message.retain and message.payload):
                        self._queue.appendleft(message)
                    raise
        finally:
            stop.cancel()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = _payload_bytes(message.payload)
            sweep = self._sweep
            if sweep is not None and topic == sweep.marker:
                sweep.done.set()
            elif sweep is not None and any(message.topic.matches(p) for p in self._owned):
                if message.retain and payload:
                    sweep.found.add(topic)
            else:
                try:
                    self._on_message(topic, payload, message.retain)
                except Exception:  # a bug in one handler must not end the connection
                    _LOGGER.exception("MQTT: handling a message on %s failed", topic)

    async def _clear_stale(self, client: aiomqtt.Client) -> None:
        """Clear every retained message under the owned patterns that the cache lacks."""
        if not self._owned:
            return
        # A message sent to ourselves after subscribing comes back after the broker's retained
        # messages for those subscriptions (it handles one client's packets in order): once it
        # is back, everything retained there has been seen.
        sweep = self._sweep = _Sweep(f"{self.status_topic}/sweep/{self.client_id}")
        try:
            for pattern in self._owned:
                await client.subscribe(pattern, qos=_QOS)
            await client.subscribe(sweep.marker, qos=_QOS)
            await client.publish(sweep.marker, b"1", qos=_QOS)
            try:
                async with asyncio.timeout(_SWEEP_TIMEOUT):
                    await sweep.done.wait()
            except TimeoutError:
                _LOGGER.debug("MQTT: no sweep marker within %g s", _SWEEP_TIMEOUT)
            await client.unsubscribe([*self._owned, sweep.marker])
        finally:
            self._sweep = None
        for topic in sorted(sweep.found - self._retained.keys()):
            _LOGGER.info("MQTT: removing %s, which this bridge no longer announces", topic)
            await client.publish(topic, b"", qos=_QOS, retain=True)


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSL socket that closes itself when its handshake fails.

    paho-mqtt drops the socket of a failed handshake (a certificate the system's CAs do not
    vouch for) without closing it: every retry would leak a descriptor until the GC finds it.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _tls_context() -> ssl.SSLContext:
    """TLS checked against the system's CA store (and host name), as a browser would."""
    context = ssl.create_default_context()
    context.sslsocket_class = _ClosingSSLSocket
    return context


def _code(err: aiomqtt.MqttCodeError) -> int | None:
    rc = err.rc
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()
