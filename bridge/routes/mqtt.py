"""MQTT's context: the Home Assistant service, given the app's parts.

``setup`` adds, when ``mqtt.enabled``, a context that builds ``MqttService`` on what the earlier
contexts made: the hub and the doorbells (``HUB``, ``DEVICES``), the event bus (``EVENTS``),
the snapshot service (``MJPEG``), the clip store and S3 uploader, the rule engine (``RULES``)
and the RTSP server's port. It comes after all of them, so it is closed first. The broker
connection runs in the background: a broker that is down never holds up the start.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from bridge.config import ServerSettings
from bridge.media.hub import Stream
from bridge.mqtt import Figures, MqttOptions, MqttService
from bridge.mqtt.options import instance_id, topic_base
from bridge.routes.automation import RULES
from bridge.routes.clips import STORE, UPLOADER
from bridge.routes.common import DEVICES, HUB, MQTT_STATS
from bridge.routes.events import EVENTS
from bridge.routes.mjpeg import MJPEG
from bridge.routes.rtsp import RTSP
from bridge.skybell import Device, SkyBellClient
from bridge.skybell.settings import apply_settings

__all__ = ["MQTT", "setup"]

MQTT = web.AppKey("mqtt", MqttService)
_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class _AppParts:
    """``bridge.mqtt.Parts`` from the app's keys, read when used (each part is made by its
    own context)."""

    def __init__(self, app: web.Application, client: SkyBellClient, server: ServerSettings) -> None:
        self._app = app
        self._client = client
        self._server = server
        host = server.host
        # A wildcard bind has no address to give out; this machine's name reaches it on a LAN.
        host = socket.gethostname() if host in _WILDCARD_HOSTS else host
        self._host = f"[{host}]" if ":" in host else host

    async def snapshot(self, stream: Stream) -> bytes:
        service = self._app[MJPEG]
        return (await service.snapshot(stream, service.spec())).jpeg

    async def device(self, device_id: str) -> Device:
        return await self._client.device(device_id)

    async def apply_settings(self, device_id: str, partial: Mapping[str, Any]) -> dict[str, Any]:
        return await apply_settings(self._client, device_id, partial)

    async def reboot(self, device_id: str) -> None:
        await self._client.reboot(device_id)

    def urls(self, stream: Stream) -> dict[str, str]:
        rtsp = self._app.get(RTSP)
        rtsp_port = rtsp.port if rtsp is not None else self._server.rtsp_port
        web_base = f"http://{self._host}:{self._server.port}/api"
        return {
            "rtsp": f"rtsp://{self._host}:{rtsp_port}/{stream.name}",
            "hls": f"{web_base}/stream.m3u8?src={stream.name}",
            "webrtc": f"{web_base}/webrtc?src={stream.name}",
            "mjpeg": f"{web_base}/stream.mjpeg?src={stream.name}",
        }

    async def figures(self) -> Figures:
        app = self._app
        store, uploader, rules = app[STORE], app.get(UPLOADER), app.get(RULES)
        rows = await asyncio.to_thread(
            store.db.query, "SELECT COUNT(*) FROM clips WHERE state = 'done'"
        )
        budget = rules.stats()["switchbot"] if rules is not None else None
        return {
            "streams_live": sum(1 for s in app[HUB].streams if s.state == "live"),
            "clips_stored": int(rows[0][0]),
            "switchbot_calls_left": budget["remaining"] if budget is not None else None,
            "s3_queue": (await uploader.counts())["pending"] if uploader is not None else None,
        }

    def rules(self) -> list[tuple[str, bool]]:
        engine = self._app.get(RULES)
        return [(r.name, r.enabled) for r in engine.rules] if engine is not None else []

    def set_rule(self, name: str, enabled: bool) -> bool:
        engine = self._app.get(RULES)
        return engine is not None and engine.set_enabled(name, enabled)


def setup(
    app: web.Application,
    options: MqttOptions,
    client: SkyBellClient,
    server: ServerSettings,
    *,
    instance: str | None = None,
    bridge_instance: str = "",
) -> None:
    """Add the MQTT context (``MQTT``, and ``MQTT_STATS`` for /metrics) when enabled; it comes
    after every part it reads. ``instance`` defaults to ``instance_id(options, bridge_instance)``
    (``bridge.instance``, which also goes into every topic)."""
    if not options.enabled:
        return

    async def mqtt_context(app: web.Application) -> AsyncIterator[None]:
        service = app[MQTT] = MqttService(
            options,
            _AppParts(app, client, server),
            app[HUB],
            app[EVENTS].bus,
            app[DEVICES],
            instance=instance or instance_id(options, bridge_instance),
            base=topic_base(options, bridge_instance),
            claims=bool(bridge_instance),
        )

        def stats() -> dict[str, float]:
            link = service.link.stats()
            return {
                "connected": link["connected"],
                "dropped": link["dropped"],
                "queued": link["queued"],
                "claim_conflicts": len(service.claims.conflicts) if service.claims else 0,
            }

        app[MQTT_STATS] = stats
        await service.start()
        try:
            yield
        finally:
            await service.close()

    app.cleanup_ctx.append(mqtt_context)
