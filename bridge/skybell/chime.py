"""Ringing SkyBell chimes on the LAN: the seed's button packet, sent as a UDP broadcast.

Every SkyBell (and SkyBell chime) on the network plays its "button pressed" sound when it
receives this datagram, exactly as if a doorbell had been pressed. A bridge listening for UDP
events (``events.udp_enabled``) hears it too, from its own address, which is no doorbell's:
it counts it as an unknown sender rather than a press.
"""

from __future__ import annotations

import asyncio
import socket

from bridge.skybell.udp import BUTTON_PACKET

__all__ = ["send_chime"]


class _Sent(asyncio.DatagramProtocol):
    def error_received(self, exc: Exception) -> None:  # an ICMP answer: nothing to do
        pass


async def send_chime(address: str, port: int) -> int:
    """Send the button packet to ``address:port`` (a broadcast address allowed); its size."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(_Sent, sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        transport.sendto(BUTTON_PACKET, (address, port))
    finally:
        transport.close()
    return len(BUTTON_PACKET)
