"""What the bridge does on events: record presses, fetch cloud videos, run the rules.

``setup`` adds ``GET /api/automation`` (rules fired, skipped, last results, and the SwitchBot
call budget) and a context that subscribes the recorder (doorbell and motion events are
recorded) and, with ``[archive] enabled``, the cloud archive (vready) to the event bus, then
starts the rule engine. It joins parts made by earlier contexts, so it comes after the hub,
clips, archive and events setups.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import aiohttp
from aiohttp import web

from bridge.automation.engine import RuleEngine
from bridge.automation.rules import Rule
from bridge.automation.switchbot import SwitchBotClient
from bridge.errors import UnknownDevice
from bridge.events.service import EventService
from bridge.media.hub import Hub
from bridge.record import Recorder, StorageFull
from bridge.record.archive import CloudArchive
from bridge.routes.archive import ARCHIVE
from bridge.routes.clips import RECORDER
from bridge.routes.common import HUB, TALK
from bridge.routes.events import EVENTS
from bridge.routes.rule_actions import doorbell_actions
from bridge.skybell.client import SkyBellClient
from bridge.skybell.led_hold import LedHolds
from bridge.skybell.payloads import Event

__all__ = ["RULES", "setup"]

_LOGGER = logging.getLogger(__name__)

RULES = web.AppKey("rules", RuleEngine)
_RECORDED_EVENTS = ("doorbell", "motion")


def _record_event(recorder: Recorder) -> Callable[[Event], Awaitable[None]]:
    async def on_event(event: Event) -> None:
        if event.type not in _RECORDED_EVENTS or not event.known_device:
            return
        try:
            await recorder.trigger(event.device_id, event.type, activity_id=event.activity_id)
        except StorageFull as err:
            # Live view goes on; the log says why this event has no clip.
            _LOGGER.warning("not recording %s at %s: %s", event.type, event.device, err)

    return on_event


def _archive_event(archive: CloudArchive) -> Callable[[Event], Awaitable[None]]:
    async def on_event(event: Event) -> None:
        # vready: the cloud finished uploading a recording; fetch it into the clips folder.
        if event.type == "vready" and event.activity_id and event.known_device:
            archive.on_vready(event.device_id, event.activity_id)

    return on_event


def _record_action(recorder: Recorder) -> Callable[[Event], Awaitable[str]]:
    async def record(event: Event) -> str:
        clip = await recorder.trigger(event.device_id, event.type, activity_id=event.activity_id)
        return f"recording {event.device}" if clip else f"{event.type} is not recorded"

    return record


def _warm_action(hub: Hub) -> Callable[[Event, float], Awaitable[str]]:
    async def warm(event: Event, seconds: float) -> str:
        stream = hub.get(event.device_id)
        if stream is None:
            raise UnknownDevice(event.device, [s.name for s in hub.streams])
        stream.keep_warm(seconds)
        return f"{stream.name} kept live for {seconds:g} s"

    return warm


async def _automation(request: web.Request) -> web.Response:
    """Rules (fired, skipped, last results) and the SwitchBot call budget."""
    return web.json_response(request.app[RULES].stats())


def setup(
    app: web.Application,
    rules: Iterable[Rule],
    *,
    switchbot: SwitchBotClient | None,
    http: aiohttp.ClientSession,
    archive: bool = False,
    client: SkyBellClient | None = None,
    chime_port: int = 5000,
) -> None:
    """Add ``/api/automation`` and the context that wires events to the recorder, the cloud
    archive (when ``archive``) and the rule engine (``RULES``). ``client`` is the SkyBell
    cloud for the tone and led actions; ``chime_port`` where chimes listen (events.udp_port)."""

    async def engine_context(app: web.Application) -> AsyncIterator[None]:
        events: EventService = app[EVENTS]
        recorder = app[RECORDER]
        events.bus.subscribe("recorder", _record_event(recorder))
        if archive:
            events.bus.subscribe("archive", _archive_event(app[ARCHIVE]))
        leds = LedHolds(client) if client is not None else None
        actions = None
        if client is not None and leds is not None:
            actions = doorbell_actions(
                app[HUB],
                recorder,
                client,
                leds,
                chime_port=chime_port,
                talk=lambda: app.get(TALK),
            )
        engine = app[RULES] = RuleEngine(
            rules,
            switchbot=switchbot,
            record=_record_action(recorder),
            warm=_warm_action(app[HUB]),
            http=http,
            log=events.log,
            devices=events.directory,
            doorbell=actions,
        )
        try:
            await engine.start()
            engine.attach(events.bus)
            yield
        finally:
            await engine.close()
            if leds is not None:
                await leds.close()  # after the rules: none can set a colour any more

    app.cleanup_ctx.append(engine_context)
    app.router.add_get("/api/automation", _automation)
