"""Pressing a simulated doorbell (or walking past it): what the real system does, on loopback.

A real press reaches the bridge three ways, and so does a simulated one:
1. the doorbell broadcasts its UDP button (or motion) packet on the LAN; here it is sent from the
   doorbell's own loopback address (``127.0.0.21``...) to a configured target such as
   ``127.0.0.1:5000``, so the listener can tell doorbells apart by sender IP;
2. the cloud records an activity, which the activity list (polling) then shows;
3. the cloud calls every enabled webhook trigger of the device that asked for the event, with the
   trigger's custom header, and counts failures: 25 in a row disable the trigger, as SkyBell does.

Each press records ``time.monotonic()`` (system-wide on Linux) and wall time, so a benchmark can
measure press-to-action latency against the bridge's own ``received_monotonic``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bridge.sim.cloud import SimCloud, SimDevice
from bridge.skybell.models import slugify
from bridge.skybell.udp import BUTTON_PACKET, MOTION_PACKET

__all__ = ["PressRecord", "SimPresser", "parse_udp_target"]

_LOGGER = logging.getLogger(__name__)
_PACKETS = {"doorbell": BUTTON_PACKET, "motion": MOTION_PACKET}
_DISABLE_AFTER = 25  # SkyBell disables a trigger after this many failures in a row
_KEPT = 1000


@dataclass
class PressRecord:
    """One simulated press: when, which activity, and what each delivery path did."""

    device_id: str
    device: str
    event: str
    activity_id: str
    monotonic: float
    wall: float
    udp: str | None = None  # "host:port" sent to, or None
    udp_error: str | None = None
    webhooks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return asdict(self)


def parse_udp_target(text: str) -> tuple[str, int]:
    """``PORT`` or ``HOST:PORT`` with a loopback IP host; raises ValueError otherwise."""
    host, _, port_text = text.rpartition(":")
    host = host or "127.0.0.1"
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"UDP port {port} is out of range")
    # The simulator stands in for a LAN broadcast; it only ever sends on this machine.
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"UDP target {host} is not a loopback address")
    return host, port


class SimPresser:
    """Presses simulated doorbells: UDP packet, cloud activity, webhook calls."""

    def __init__(
        self,
        cloud: SimCloud,
        http: Callable[[], aiohttp.ClientSession],
        *,
        udp_target: tuple[str, int] | None = None,
        webhook_timeout: float = 5.0,
    ) -> None:
        self.cloud = cloud
        self.udp_target = udp_target
        self.presses: deque[PressRecord] = deque(maxlen=_KEPT)
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=webhook_timeout)

    def find(self, wanted: str) -> SimDevice:
        """A simulated device by id, name or slug; KeyError if none."""
        if not wanted:
            raise KeyError(wanted)
        for device in self.cloud.devices.values():
            if wanted in (device.id, device.name) or slugify(device.name) == slugify(wanted):
                return device
        raise KeyError(wanted)

    async def press(
        self, device: str, event: str = "doorbell", *, udp_target: tuple[str, int] | None = None
    ) -> PressRecord:
        """Press (``doorbell``) or trigger ``motion`` on a device; returns once delivered."""
        if event not in _PACKETS:
            raise ValueError(f"event must be doorbell or motion, not {event!r}")
        found = self.find(device)
        mono, wall = time.monotonic(), time.time()
        target = udp_target or self.udp_target
        activity = self.cloud.add_activity(found, event)
        record = PressRecord(found.id, found.name, event, activity["activity_id"], mono, wall)
        self.presses.append(record)
        # The broadcast leaves the doorbell first; the cloud's webhook follows.
        if target is not None:
            record.udp = f"{target[0]}:{target[1]}"
            record.udp_error = _send_udp(found.ip_address, target, _PACKETS[event])
        payload = {
            "event": event,
            "date_time": activity["event_time"],
            "device_id": found.id,
            "name": found.name,
            "activity_id": activity["activity_id"],
        }
        triggers = [
            t
            for t in self.cloud.triggers.values()
            if t["device_id"] == found.id and t["enabled"] and event in t["on_events"]
        ]
        record.webhooks = list(
            await asyncio.gather(*(self._call_webhook(t, payload) for t in triggers))
        )
        return record

    async def _call_webhook(
        self, trigger: dict[str, Any], payload: dict[str, Any]
    ) -> dict[str, Any]:
        meta = trigger["meta_config"]
        headers = {}
        if meta.get("header_name") and meta.get("header_value"):
            headers[meta["header_name"]] = meta["header_value"]
        method = str(meta.get("method") or "post").upper()
        # Only POST webhooks carry a payload (SkyBell's documentation says so).
        body = payload if method == "POST" else None
        result: dict[str, Any] = {"trigger_id": trigger["trigger_id"], "method": method}
        try:
            async with self._http().request(
                method, meta["url"], json=body, headers=headers, timeout=self._timeout
            ) as resp:
                await resp.read()
                result["status"] = resp.status
                ok = 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError) as err:
            result["error"] = type(err).__name__
            ok = False
        _count(trigger, ok, self.cloud.now_ms())
        return result

    # -- HTTP ----------------------------------------------------------------------------------

    def setup(self, app: web.Application) -> None:
        """Add ``POST /_sim/press?device=&event=doorbell|motion[&udp=HOST:PORT]`` and
        ``GET /_sim/presses``."""
        app.router.add_post("/_sim/press", self._press_route)
        app.router.add_get("/_sim/presses", self._presses_route)

    async def _press_route(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            target = parse_udp_target(q["udp"]) if q.get("udp") else None
        except ValueError as err:
            return web.json_response({"error": f"bad udp target: {err}"}, status=400)
        try:
            record = await self.press(
                q.get("device", ""), q.get("event", "doorbell"), udp_target=target
            )
        except KeyError:
            known = [d.name for d in self.cloud.devices.values()]
            return web.json_response(
                {"error": f"unknown device {q.get('device', '')!r}", "devices": known}, status=404
            )
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)
        return web.json_response(record.as_dict())

    async def _presses_route(self, request: web.Request) -> web.Response:
        return web.json_response([p.as_dict() for p in self.presses])


def _send_udp(source_ip: str, target: tuple[str, int], packet: bytes) -> str | None:
    """Send from the doorbell's own address; returns an error text, or None when sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((source_ip, 0))
            sock.sendto(packet, target)
    except OSError as err:
        _LOGGER.warning("simulated UDP event from %s failed: %s", source_ip, err)
        return str(err)
    return None


def _count(trigger: dict[str, Any], ok: bool, now_ms: int) -> None:
    if ok:
        trigger["fail_count"] = 0
        return
    trigger["fail_count"] = int(trigger.get("fail_count") or 0) + 1
    if trigger["fail_count"] >= _DISABLE_AFTER:
        trigger["enabled"] = False
        trigger["disabled_on"] = now_ms
        trigger["disabled_reason"] = f"{_DISABLE_AFTER} failures in a row"
