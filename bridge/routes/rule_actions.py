"""The doorbell actions of rules (tone, led, stop_recording, chime, say), built from the app's parts.

``bridge.automation`` stays free of the SkyBell client, the recorder and sockets; this module
turns each into the callable the engine calls (``DoorbellActions``). Every callable returns the
one line stored with the event as the action's result.
"""

from __future__ import annotations

from bridge.automation.doorbell_actions import DoorbellActions
from bridge.errors import UnknownDevice
from bridge.media.hub import Hub, Stream
from bridge.record import Recorder
from bridge.skybell.chime import send_chime
from bridge.skybell.client import SkyBellClient
from bridge.skybell.led_hold import LedHolds
from bridge.skybell.payloads import Event

__all__ = ["doorbell_actions"]


def _stream(hub: Hub, event: Event) -> Stream:
    stream = hub.get(event.device_id)
    if stream is None:
        raise UnknownDevice(event.device, [s.name for s in hub.streams])
    return stream


def doorbell_actions(
    hub: Hub,
    recorder: Recorder,
    client: SkyBellClient,
    leds: LedHolds,
    *,
    chime_port: int,
) -> DoorbellActions:
    """The callables for the engine, on this app's hub, recorder, cloud client and LEDs."""

    async def tone(event: Event, name: str) -> str:
        await client.play_tone(event.device_id, name)
        return f"{event.device} played {name}"

    async def led(event: Event, colour: str, seconds: float) -> str:
        back = await leds.hold(event.device_id, colour, seconds)
        return f"{event.device} LED {colour} for {seconds:g} s, then {back}"

    async def stop_recording(event: Event) -> str:
        clip = await recorder.stop(_stream(hub, event))
        if clip is None:
            return f"{event.device} was not recording"
        return f"{event.device}: clip ended ({clip.duration:.1f} s)"

    async def chime(address: str, port: int | None) -> str:
        port = port or chime_port
        size = await send_chime(address, port)
        return f"button packet ({size} bytes) sent to {address}:{port}"

    return DoorbellActions(tone=tone, led=led, stop_recording=stop_recording, chime=chime)
