"""The simulated SwitchBot's webhook deliveries: the events its sensors, lock and keypad send.

``SimSwitchBot.send_event("motion")`` (or ``POST /switchbot/_sim/event`` with
``{"event": "motion"}``, which ``skybell-bridge sim switchbot motion`` calls) posts the API
v1.1 shape to every enabled URL registered with setupWebhook, as SwitchBot's servers do::

    {"eventType": "changeReport", "eventVersion": "1",
     "context": {"deviceType": "WoPresence", "deviceMac": "c0:1d:4e:5f:60:71",
                 "detectionState": "DETECTED", "timeOfSample": 1764921600000}}
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

import aiohttp

__all__ = ["SIM_EVENTS", "Delivery", "deliver", "webhook_body"]

# Event name -> (the device list's deviceType, the webhook's deviceType, context state fields).
SIM_EVENTS: Final[dict[str, tuple[str, str, dict[str, Any]]]] = {
    "motion": ("Motion Sensor", "WoPresence", {"detectionState": "DETECTED"}),
    "no-motion": ("Motion Sensor", "WoPresence", {"detectionState": "NOT_DETECTED"}),
    "open": (
        "Contact Sensor",
        "WoContact",
        {"openState": "open", "detectionState": "DETECTED", "doorMode": "OUT_DOOR"},
    ),
    "close": (
        "Contact Sensor",
        "WoContact",
        {"openState": "close", "detectionState": "NOT_DETECTED", "doorMode": "IN_DOOR"},
    ),
    "left-open": ("Contact Sensor", "WoContact", {"openState": "timeOutNotClose"}),
    "locked": ("Smart Lock", "WoLock", {"lockState": "LOCKED"}),
    "unlocked": ("Smart Lock", "WoLock", {"lockState": "UNLOCKED"}),
    "jammed": ("Smart Lock", "WoLock", {"lockState": "JAMMED"}),
    "keypad": (
        "Keypad",
        "WoKeypad",
        {"eventName": "createKey", "commandId": "CMD-1764921600000-01", "result": "success"},
    ),
}
ALIASES: Final = {"lock": "locked", "unlock": "unlocked", "no_motion": "no-motion"}

Delivery = tuple[str, int | str]  # (url, HTTP status or the error's name)


def _mac(device_id: str) -> str:
    # Webhooks name a device by MAC with colons, the device list by the same digits without.
    bare = device_id.lower()
    return ":".join(bare[i : i + 2] for i in range(0, len(bare), 2))


def webhook_body(event: str, device_id: str, *, now: float | None = None) -> dict[str, Any]:
    """The body SwitchBot posts for ``event`` (a key of ``SIM_EVENTS``) of one device."""
    _, device_type, state = SIM_EVENTS[event]
    when = int((time.time() if now is None else now) * 1000)
    context = {"deviceType": device_type, "deviceMac": _mac(device_id), **state}
    context["timeOfSample"] = when
    return {"eventType": "changeReport", "eventVersion": "1", "context": context}


async def deliver(urls: Iterable[str], body: dict[str, Any]) -> list[Delivery]:
    """POST ``body`` to each URL; what each answered."""
    out: list[Delivery] = []
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for url in urls:
            try:
                async with http.post(url, json=body) as resp:
                    out.append((url, resp.status))
            except (aiohttp.ClientError, TimeoutError) as err:
                out.append((url, type(err).__name__))
    return out
