"""Local UDP events: the datagrams a SkyBell broadcasts on its LAN when pressed or on motion.

Each datagram is a 4-byte little-endian length, then that many bytes of base64 text ending in a
newline. The text decodes to OpenSSL "Salted__" data with a fixed salt per event type, so we do
not decrypt anything: each packet is an opaque token looked up in ``TOKENS``. The sender's IP
names the doorbell (the device's ``telemetry.ip_address``). [U] Whether every device sends the
same tokens: the table is overridable for that reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, TypedDict

from bridge.skybell.directory import DeviceDirectory
from bridge.skybell.models import Device
from bridge.skybell.payloads import Event, make_event
from bridge.tasks import TaskSet

__all__ = [
    "BUTTON_PACKET",
    "BUTTON_TOKEN",
    "MOTION_PACKET",
    "MOTION_TOKEN",
    "TOKENS",
    "UdpCounts",
    "UdpListener",
    "encode_packet",
    "parse_packet",
]

_LOGGER = logging.getLogger(__name__)

# The two packets from the SkyBell documentation: button pressed, then motion detected.
BUTTON_TOKEN: Final = "U2FsdGVkX19I2qbfYVjEx55dE0IwT1MGJQO7+10uYsQ="  # noqa: S105 - not a secret
MOTION_TOKEN: Final = "U2FsdGVkX19D5MkIkoMdNaaRL9ndCFYnMVKpi/ylBq8="  # noqa: S105 - not a secret
TOKENS: Final[Mapping[str, str]] = {BUTTON_TOKEN: "doorbell", MOTION_TOKEN: "motion"}
_MAX_TEXT = 1024  # real packets carry 45 bytes; anything this large is not one
# Packets from addresses no doorbell is known at wait for one cloud lookup. Anyone on the LAN can
# send well-formed packets, and the lookup may hang for the cloud's whole timeout, so what waits
# is bounded: a few packets per address (a doorbell sends one per press), a few addresses.
_PENDING_PER_ADDRESS = 4
_PENDING_ADDRESSES = 16


def encode_packet(token: str) -> bytes:
    """The datagram a doorbell sends for ``token``: length prefix, text, newline."""
    body = token.encode("ascii") + b"\n"
    return len(body).to_bytes(4, "little") + body


BUTTON_PACKET: Final = encode_packet(BUTTON_TOKEN)
MOTION_PACKET: Final = encode_packet(MOTION_TOKEN)


def parse_packet(data: bytes) -> str | None:
    """The base64 token in a well-formed datagram, or None for anything else."""
    if len(data) < 5:
        return None
    length = int.from_bytes(data[:4], "little")
    if length != len(data) - 4 or not 0 < length <= _MAX_TEXT:
        return None
    text = data[4:].removesuffix(b"\n")
    try:
        base64.b64decode(text, validate=True)
        return text.decode("ascii")
    except (binascii.Error, ValueError):
        return None


class UdpCounts(TypedDict):
    """Datagrams received, and what became of them."""

    received: int
    events: int  # published as events
    junk: int  # not a SkyBell packet
    unknown_sender: int  # from an address that is none of the account's doorbells


class UdpListener(asyncio.DatagramProtocol):
    """Listens for doorbell datagrams and publishes an event for each one it understands."""

    def __init__(
        self,
        directory: DeviceDirectory,
        publish: Callable[[Event], object],
        *,
        host: str = "0.0.0.0",
        port: int = 5000,
        tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tokens = dict(TOKENS if tokens is None else tokens)
        self.counts: UdpCounts = {"received": 0, "events": 0, "junk": 0, "unknown_sender": 0}
        self._directory = directory
        self._publish = publish
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks = TaskSet()  # address lookups of unknown senders
        self._pending: dict[str, list[str]] = {}  # tokens waiting for their sender's lookup
        self._warned: set[str] = set()

    async def start(self) -> None:
        """Bind the socket; ``port`` is updated to the bound port (useful with 0)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.host, self.port), reuse_port=False
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        _LOGGER.info("listening for SkyBell UDP events on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop listening; safe to call twice."""
        if self._transport is not None:
            transport, self._transport = self._transport, None
            transport.close()
        await self._tasks.cancel_all()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """Called by asyncio for each datagram."""
        self.counts["received"] += 1
        token = parse_packet(data)
        if token is None:
            self.counts["junk"] += 1
            _LOGGER.debug("ignored a %d-byte datagram from %s", len(data), addr[0])
            return
        ip = str(addr[0])
        device = self._directory.by_ip.get(ip)
        if device is not None:
            self._emit(device, token, ip)
            return
        # Maybe a doorbell added (or readdressed) since start: ask the cloud, off this callback,
        # once per address however many packets arrive meanwhile.
        waiting = self._pending.get(ip)
        if waiting is not None:
            if len(waiting) < _PENDING_PER_ADDRESS:
                waiting.append(token)
            else:
                self.counts["unknown_sender"] += 1
            return
        if len(self._pending) >= _PENDING_ADDRESSES:
            self.counts["unknown_sender"] += 1
            return
        self._pending[ip] = [token]
        self._tasks.spawn(self._resolve(ip), name=f"udp resolve {ip}")

    async def _resolve(self, ip: str) -> None:
        try:
            device = await self._directory.find_ip(ip)
        finally:
            tokens = self._pending.pop(ip, [])
        if device is not None:
            for token in tokens:
                self._emit(device, token, ip)
            return
        self.counts["unknown_sender"] += len(tokens)
        if self._directory.foreign_ip(ip):
            return  # another bridge instance's doorbell, on the same LAN: not news here
        if ip not in self._warned:
            self._warned.add(ip)
            _LOGGER.warning("SkyBell UDP event from %s, which is no doorbell on the account", ip)

    def _emit(self, device: Device, token: str, ip: str) -> None:
        type_ = self.tokens.get(token, "unknown")
        payload: dict[str, Any] = {"ip": ip}
        if type_ == "unknown":
            payload["token"] = token
        self.counts["events"] += 1
        self._publish(make_event(device, type_, "udp", payload=payload))

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for a datagram we never send; logged, not fatal."""
        _LOGGER.debug("UDP listener error: %s", exc)
