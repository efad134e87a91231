"""The doorbells and the bridge in Home Assistant, over MQTT.

``MqttService`` announces every entity (``bridge.mqtt.discovery``), keeps their states on the
broker (retained, through ``MqttLink``), turns bus events into the Doorbell event, the Ding and
Motion pulses, the Last event time and a fresh snapshot, and obeys commands. Nothing here waits
on the broker: publishing only queues.

A picture is taken on a press or motion (the event's own preview when it has one, else the
bridge's snapshot path, which uses the live view the press already started) and on the Take
snapshot button, never otherwise: a battery doorbell woken for pictures nobody asked for would
be flat in days. Device records (online, battery, Wi-Fi, settings) are read from the cloud now
and then and on availability/telemetry events; reading them does not wake the doorbell.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import BridgeError, CloudError, DeviceUnreachable, SettingsError
from bridge.events.bus import EventBus, Subscription
from bridge.media.hub import Hub, Stream
from bridge.mqtt.claims import Claims
from bridge.mqtt.commands import CommandError, Control, parse_command
from bridge.mqtt.discovery import (
    LIGHT_SETTINGS,
    Doorbell,
    bridge_entities,
    doorbell_entities,
    rule_keys,
    setting_component,
)
from bridge.mqtt.link import MqttLink
from bridge.mqtt.options import MqttOptions
from bridge.mqtt.parts import Figures, Parts
from bridge.mqtt.states import (
    device_states,
    event_payload,
    last_event_attributes,
    on_off,
    setting_states,
)
from bridge.mqtt.topics import BRIDGE, Topics
from bridge.skybell.models import Device
from bridge.skybell.payloads import Event
from bridge.skybell.settings import SETTINGS, extract_settings
from bridge.tasks import TaskSet

__all__ = ["MqttService"]

_LOGGER = logging.getLogger(__name__)

_HOLD = 30.0  # Keep live renews a keep-warm of this long every third of it


@dataclass
class _Bell:
    stream: Stream
    device: Device
    target: str  # its topic level: the stream name
    settings: dict[str, Any]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one cloud round trip at a time
    pulses: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    keep_live: asyncio.Task[None] | None = None
    busy: set[str] = field(default_factory=set)  # "snapshot", "refresh" under way


def _controls() -> dict[str, Control]:
    """Every doorbell command key and what its payload must be."""
    out = {
        "led": Control("led", "light"),
        "take_snapshot": Control("take_snapshot", "button"),
        "reboot": Control("reboot", "button"),
        "keep_live": Control("keep_live", "switch"),
    }
    for key, setting in SETTINGS.items():
        if key in LIGHT_SETTINGS:
            continue
        kind = setting_component(setting)
        if kind == "number":
            lo, hi = setting.minimum or 0, setting.maximum or 0
            out[key] = Control(key, "number", minimum=lo, maximum=hi)
        elif kind == "select":
            out[key] = Control(key, "select", options=setting.options)
        else:
            out[key] = Control(key, "switch")
    return out


class MqttService:
    """Announces, publishes and obeys; ``start()`` then ``close()``."""

    def __init__(
        self,
        options: MqttOptions,
        parts: Parts,
        hub: Hub,
        bus: EventBus,
        devices: list[Device],
        *,
        instance: str,
        base: str | None = None,
        claims: bool = False,
    ) -> None:
        self.options = options
        base = base or options.topic  # with bridge.instance: <topic>/<instance>
        self.topics = topics = Topics(base, options.discovery_prefix, instance)
        self._parts = parts
        self._hub = hub
        self._bus = bus
        self._bells: dict[str, _Bell] = {}
        for device in devices:
            stream = hub.get(device.id)
            if stream is not None:
                # A doorbell named "Bridge" must not answer for the bridge's own topics.
                target = stream.name if stream.name != BRIDGE else device.id
                self._bells[device.id] = _Bell(stream, device, target, extract_settings(device))
        # With bridge.instance: claim each doorbell, so two instances serving one are found.
        self.claims: Claims | None = None
        if claims:
            names = {d_id: bell.device.name for d_id, bell in self._bells.items()}
            self.claims = Claims(options.topic, instance, names)
        self._rules = rule_keys([name for name, _ in parts.rules()])
        self._controls = _controls()
        self.link = MqttLink(
            options,
            status_topic=topics.status,
            subscriptions=topics.subscriptions
            + ([self.claims.subscription] if self.claims is not None else []),
            on_message=self._on_message,
            on_connect=self._on_connect,
            owned=topics.owned if options.discovery else (),
            client_prefix=instance,
        )
        self._tasks = TaskSet()
        self._sub: Subscription | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Announce and publish every state, subscribe to events, start connecting."""
        # Every config is in the link's cache before its first connect: what is on the broker
        # under our node id and not in the cache is cleared then as stale.
        try:
            first = await self._parts.figures()
        except Exception as err:  # the figures are optional; the entities are not
            _LOGGER.warning("MQTT: cannot read the bridge's figures: %s", err)
            first = None
        if self.options.discovery:
            self._announce(first)
        for bell in self._bells.values():
            self._publish_bell(bell)
            bell.stream.on_change(self._stream_changed)
        for key, name in self._rules.items():
            enabled = dict(self._parts.rules()).get(name, False)
            self._state(BRIDGE, f"rule/{key}", on_off(enabled))
        if self.claims is not None:
            self.claims.claim_all(self._retain)
        self._sub = self._bus.subscribe("mqtt", self._on_event)
        self.link.start()
        self._tasks.spawn(self._refresh_loop(), name="mqtt-devices")
        self._tasks.spawn(self._figures_loop(), name="mqtt-figures")

    async def close(self) -> None:
        """Stop taking events, end pulses and keep-lives, say offline; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._sub is not None:
            await self._sub.cancel()
        for bell in self._bells.values():
            for timer in bell.pulses.values():
                timer.cancel()
            bell.pulses.clear()
        await self._tasks.cancel_all()
        if self.claims is not None:
            self.claims.release(self._retain)  # sent before the link's orderly disconnect
        await self.link.close()

    def _announce(self, figures: Figures | None) -> None:
        entities = [
            e
            for bell in self._bells.values()
            for e in doorbell_entities(self.topics, _doorbell(bell))
        ]
        # A figure of a part that is not configured (None) gets no sensor.
        entities += bridge_entities(
            self.topics,
            rules=list(self._rules.values()),
            switchbot=figures is None or figures["switchbot_calls_left"] is not None,
            s3=figures is None or figures["s3_queue"] is not None,
        )
        for entity in entities:
            self.link.publish(entity.topic, entity.payload(), retain=True)

    def _on_connect(self) -> None:
        # The URLs name ports bound after this service started (RTSP binds last).
        for bell in self._bells.values():
            attributes = json.dumps(self._parts.urls(bell.stream))
            self._state(bell.target, "keep_live/attributes", attributes)

    # -- publishing ----------------------------------------------------------------------------

    def _state(self, target: str, key: str, payload: str | bytes) -> None:
        """Publish a retained state unless the broker already has it from us."""
        topic = self.topics.state(target, key)
        data = payload.encode() if isinstance(payload, str) else payload
        if self.link.retained(topic) != data:
            self.link.publish(topic, data, retain=True)

    def _publish_bell(self, bell: _Bell) -> None:
        for key, payload in device_states(bell.device).items():
            self._state(bell.target, key, payload)
        for key, payload in setting_states(bell.settings).items():
            self._state(bell.target, key, payload)
        for key in ("ding", "motion"):
            if key not in bell.pulses:
                self._state(bell.target, key, "OFF")
        self._state(bell.target, "live_stream", bell.stream.state)
        self._state(bell.target, "keep_live", on_off(bell.keep_live is not None))
        self._state(bell.target, "keep_live/attributes", json.dumps(self._parts.urls(bell.stream)))

    def _stream_changed(self, stream: Stream) -> None:
        bell = self._bells.get(stream.device_id)
        if bell is None or self._closed:
            return
        self._state(bell.target, "live_stream", stream.state)
        self._figure("streams_live", sum(1 for s in self._hub.streams if s.state == "live"))

    def _figure(self, key: str, value: int) -> None:
        self._state(BRIDGE, key, str(value))

    # -- events --------------------------------------------------------------------------------

    async def _on_event(self, event: Event) -> None:
        bell = self._bells.get(event.device_id) if event.known_device else None
        if bell is None or self._closed:
            return
        if event.type in ("availability", "telemetry"):
            self._spawn_once(bell, "refresh", self._refresh(bell))
            return
        if event.type not in ("doorbell", "motion"):
            return
        if event.type == "doorbell":
            # An event, never retained: a press replayed on reconnect would ring again.
            self.link.publish(self.topics.state(bell.target, "doorbell"), event_payload(event))
        self._pulse(bell, "ding" if event.type == "doorbell" else "motion")
        self._state(bell.target, "last_event", event.time.isoformat())
        self._state(bell.target, "last_event/attributes", last_event_attributes(event))
        if event.preview is not None and event.preview.startswith(b"\xff\xd8"):
            self._state(bell.target, "snapshot", event.preview)
        else:
            self._spawn_once(bell, "snapshot", self._snapshot(bell, quiet=True))

    def _pulse(self, bell: _Bell, key: str) -> None:
        """``ON`` now, ``OFF`` after ding_seconds; a new event restarts the time."""
        old = bell.pulses.pop(key, None)
        if old is not None:
            old.cancel()
        self._state(bell.target, key, "ON")

        def end() -> None:
            bell.pulses.pop(key, None)
            self._state(bell.target, key, "OFF")

        loop = asyncio.get_running_loop()
        bell.pulses[key] = loop.call_later(self.options.ding_seconds, end)

    def _spawn_once(self, bell: _Bell, job: str, coro: Coroutine[Any, Any, None]) -> None:
        if job in bell.busy:
            coro.close()  # one at a time per doorbell: the running one gives the news
            return
        bell.busy.add(job)

        async def run() -> None:
            try:
                await coro
            finally:
                bell.busy.discard(job)

        self._tasks.spawn(run(), name=f"mqtt-{job}:{bell.target}")

    async def _snapshot(self, bell: _Bell, *, quiet: bool = False) -> None:
        try:
            jpeg = await self._parts.snapshot(bell.stream)
        except BridgeError as err:
            if not quiet:
                raise
            _LOGGER.warning("MQTT: no snapshot of %s for the event: %s", bell.target, err)
            return
        self._state(bell.target, "snapshot", jpeg)

    async def _refresh(self, bell: _Bell) -> None:
        try:
            device = await self._parts.device(bell.device.id)
        except CloudError as err:
            _LOGGER.debug("MQTT: cannot read %s from the cloud: %s", bell.target, err)
            return
        bell.device = device
        bell.settings = extract_settings(device)
        self._publish_bell(bell)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.device_interval)
            for bell in self._bells.values():
                self._spawn_once(bell, "refresh", self._refresh(bell))

    async def _figures_loop(self) -> None:
        while True:
            try:
                figures = await self._parts.figures()
            except Exception as err:  # a figure must never end the loop (a closing database)
                _LOGGER.debug("MQTT: cannot read the bridge's figures: %s", err)
            else:
                for key, value in figures.items():
                    if isinstance(value, int):
                        self._figure(key, value)
            await asyncio.sleep(self.options.stats_interval)

    # -- commands ------------------------------------------------------------------------------

    def _retain(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload, retain=True)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if self.claims is not None and self.claims.seen(topic, payload, self._retain):
            return
        if topic == self.topics.ha_status:
            if payload.strip() == b"online" and not retained:
                # Home Assistant restarted: send it everything again, as ring-mqtt does.
                self.link.republish()
            return
        command = self.topics.parse_command(topic)
        if command is not None and retained:
            # The broker hands a retained command to every new connection: a retained Reboot
            # would reboot the doorbell each time the bridge reconnects.
            self._refuse(
                topic, f"{command.key}: a retained command is not obeyed; publish it without retain"
            )
        elif command is not None and not self._closed:
            self._tasks.spawn(
                self._obey(topic, command.target, command.key, payload), name="mqtt-command"
            )

    async def _obey(self, topic: str, target: str, key: str, payload: bytes) -> None:
        try:
            if target == BRIDGE:
                self._bridge_command(key, payload)
            else:
                await self._doorbell_command(self._find(target), key, payload)
        except (CommandError, SettingsError) as err:
            self._refuse(topic, str(err))
        except DeviceUnreachable:
            self._refuse(
                topic, f"{key}: the doorbell did not answer (asleep or offline); try again"
            )
        except BridgeError as err:
            self._refuse(topic, f"{key}: {err}")

    def _refuse(self, topic: str, message: str) -> None:
        _LOGGER.warning("MQTT: refused the command on %s: %s", topic, message)
        payload = json.dumps({"topic": topic, "error": message})
        self.link.publish(self.topics.error, payload)

    def _find(self, target: str) -> _Bell:
        stream = self._hub.get(target)
        bell = self._bells.get(stream.device_id) if stream is not None else None
        if bell is None:
            known = ", ".join(b.target for b in self._bells.values()) or "none"
            raise CommandError("doorbell", f"unknown doorbell {target!r}; known: {known}")
        return bell

    def _bridge_command(self, key: str, payload: bytes) -> None:
        rule = self._rules.get(key.removeprefix("rule/")) if key.startswith("rule/") else None
        if rule is None:
            known = ", ".join(f"rule/{k}" for k in self._rules) or "none"
            raise CommandError(key, f"no such control on the bridge; known: {known}")
        enabled = parse_command(Control(key, "switch"), payload)
        if not self._parts.set_rule(rule, enabled):
            raise CommandError(key, f"rule {rule!r} is gone")
        _LOGGER.info("MQTT: rule %r %s", rule, "enabled" if enabled else "disabled")
        self._state(BRIDGE, key, on_off(enabled))

    async def _doorbell_command(self, bell: _Bell, key: str, payload: bytes) -> None:
        control = self._controls.get(key)
        if control is None:
            known = ", ".join(self._controls)
            raise CommandError(key, f"no such control; known: {known}")
        value = parse_command(control, payload)
        if key == "take_snapshot":
            await self._snapshot(bell)
        elif key == "keep_live":
            self._keep_live(bell, value)
        elif key == "reboot":
            async with bell.lock:
                await self._parts.reboot(bell.device.id)
            _LOGGER.info("MQTT: asked %s to reboot", bell.target)
        else:
            partial = value if key == "led" else {key: value}
            async with bell.lock:
                bell.settings = await self._parts.apply_settings(bell.device.id, partial)
            # What the cloud confirms, for every control: one change can move another.
            for state_key, state in setting_states(bell.settings).items():
                self._state(bell.target, state_key, state)

    def _keep_live(self, bell: _Bell, on: bool) -> None:
        if on and bell.keep_live is None:
            bell.keep_live = self._tasks.spawn(self._hold(bell), name=f"mqtt-keep:{bell.target}")
        elif not on and bell.keep_live is not None:
            bell.keep_live.cancel()
            bell.keep_live = None
        self._state(bell.target, "keep_live", on_off(on))
        self._state(bell.target, "keep_live/attributes", json.dumps(self._parts.urls(bell.stream)))

    async def _hold(self, bell: _Bell) -> None:
        # The hub's keep-warm, renewed while the switch is on; off, it runs out within _HOLD.
        while True:
            bell.stream.keep_warm(_HOLD)
            await asyncio.sleep(_HOLD / 3)


def _doorbell(bell: _Bell) -> Doorbell:
    device = bell.device
    return Doorbell(
        device_id=device.id,
        name=device.name,
        slug=bell.target,
        model=device.model,
        firmware=device.firmware,
        serial=device.serial,
        has_battery=device.battery is not None,
    )
