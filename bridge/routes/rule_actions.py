"""Rules' doorbell actions (say, tone, led, stop_recording, chime), built from the app's parts.

``bridge.automation`` stays free of the SkyBell client, the recorder and sockets; this module
turns each into the callable the engine calls (``DoorbellActions``). Every callable returns the
one line stored with the event as the action's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import av

from bridge.automation.doorbell_actions import DoorbellActions
from bridge.errors import UnknownDevice
from bridge.media.hub import Hub, Stream
from bridge.record import Recorder
from bridge.skybell.chime import send_chime
from bridge.skybell.client import SkyBellClient
from bridge.skybell.led_hold import LedHolds
from bridge.skybell.payloads import Event
from bridge.talk import TalkService, decode_audio

__all__ = ["doorbell_actions"]

_MAX_SAY = 600.0  # the rules parser refuses longer files; this only bounds a file changed since


def _stream(hub: Hub, event: Event) -> Stream:
    stream = hub.get(event.device_id)
    if stream is None:
        raise UnknownDevice(event.device, [s.name for s in hub.streams])
    return stream


async def _frames(frames: Sequence[av.AudioFrame]) -> AsyncIterator[av.AudioFrame]:
    for frame in frames:
        yield frame


def doorbell_actions(
    hub: Hub,
    recorder: Recorder,
    client: SkyBellClient,
    leds: LedHolds,
    *,
    chime_port: int,
    talk: Callable[[], TalkService | None] = lambda: None,
) -> DoorbellActions:
    """The callables for the engine, on this app's hub, recorder, cloud client and LEDs;
    ``talk`` gives the talk service (read at each say: it starts with the app)."""

    async def say(event: Event, path: Path) -> str:
        service = talk()
        if service is None:
            raise RuntimeError("talking to doorbells is not available")
        stream = _stream(hub, event)
        data = await asyncio.to_thread(path.read_bytes)
        frames = await decode_audio(data, _MAX_SAY)
        # The talk service's rules apply: one talker at a time (a person on the page or a
        # second rule gets "someone is already talking"), the doorbell woken if asleep.
        async with await service.open(stream.name, f"rule say {path.name}") as session:
            await session.play(_frames(frames))
            played, codec = session.seconds, session.codec
        return f"said {path.name} to {stream.name} ({played:.1f} s, {codec})"

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

    return DoorbellActions(say=say, tone=tone, led=led, stop_recording=stop_recording, chime=chime)
