"""A doorbell's own settings and reboot, through the SkyBell cloud.

- ``GET /api/devices/{stream}/settings``: the user-facing settings the cloud reports now, and
  the controls that change them (labels, ranges, options) from ``bridge.skybell.settings``.
- ``POST /api/devices/{stream}/settings`` with a partial JSON object: validated, sent, and
  answered with the settings the cloud reports afterwards (each change is a round trip).
- ``POST /api/devices/{stream}/reboot``: the doorbell restarts 10 to 60 s later (seed).

``{stream}`` is the stream name or the device id, as everywhere. Bad input is a 400 before the
cloud is asked; a doorbell that does not answer the cloud (HTTP 599 there) is a 504 that says
so, and any other cloud failure a 502. These are state-changing requests from a browser, so
they pass the Host/Origin guard and the password like every route (``bridge.app``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import Any, TypedDict, TypeVar

from aiohttp import web

from bridge.errors import CloudError, CloudTimeout, DeviceUnreachable, SettingsError
from bridge.media.hub import Stream
from bridge.routes.common import DEVICES, HUB, error, find_stream
from bridge.skybell import SkyBellClient
from bridge.skybell.settings import ControlInfo, apply_settings, controls, extract_settings

__all__ = ["DeviceSettingsBody", "RebootBody", "setup"]

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")
UNREACHABLE = "doorbell did not answer"  # the words the page and clients look for


class DeviceSettingsBody(TypedDict):
    """``GET`` and ``POST /api/devices/{stream}/settings``."""

    stream: str
    id: str  # the SkyBell device id
    device: str  # the doorbell's name as the SkyBell app shows it
    settings: dict[str, Any]  # key -> bool, int, str, or None for a value no control can show
    controls: list[ControlInfo]


class RebootBody(TypedDict):
    """``POST /api/devices/{stream}/reboot``."""

    stream: str
    id: str
    message: str


def _stream(request: web.Request) -> Stream:
    return find_stream(request.app[HUB], request.match_info["stream"])


def _name(app: web.Application, stream: Stream) -> str:
    device = next((d for d in app[DEVICES] if d.id == stream.device_id), None)
    return device.name if device is not None else stream.name


async def _cloud(name: str, call: Awaitable[_T]) -> _T:
    """Await a cloud call; its failures become a 504 or 502 whose message says what happened."""
    try:
        return await call
    except DeviceUnreachable as err:
        raise error(
            web.HTTPGatewayTimeout,
            f"{UNREACHABLE}: {name} did not answer the SkyBell cloud in time (HTTP 599); "
            "check that it is online and try again",
            cloud_status=err.status,
        ) from None
    except CloudTimeout as err:
        raise error(web.HTTPGatewayTimeout, f"the SkyBell cloud did not answer: {err}") from None
    except CloudError as err:
        raise error(web.HTTPBadGateway, f"the SkyBell cloud refused: {err}") from None


async def _json_object(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        raise error(web.HTTPBadRequest, "expected a JSON object of settings to change")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:
        reason = str(err).splitlines()[0][:80] if str(err) else type(err).__name__
        raise error(web.HTTPBadRequest, f"body is not JSON: {reason}") from None


def setup(app: web.Application, client: SkyBellClient) -> None:
    """Add the settings and reboot routes; they use the hub's streams (after ``streams.setup``)."""

    async def get_settings(request: web.Request) -> web.Response:
        stream = _stream(request)
        device = await _cloud(_name(request.app, stream), client.device(stream.device_id))
        body: DeviceSettingsBody = {
            "stream": stream.name,
            "id": stream.device_id,
            "device": device.name,
            "settings": extract_settings(device),
            "controls": controls(),
        }
        return web.json_response(body)

    async def post_settings(request: web.Request) -> web.Response:
        stream = _stream(request)
        name = _name(request.app, stream)
        partial = await _json_object(request)
        try:
            confirmed = await _cloud(name, apply_settings(client, stream.device_id, partial))
        except SettingsError as err:
            raise error(web.HTTPBadRequest, str(err), key=err.key) from None
        _LOGGER.info("settings of %s changed: %s", name, ", ".join(sorted(partial)))
        body: DeviceSettingsBody = {
            "stream": stream.name,
            "id": stream.device_id,
            "device": name,
            "settings": confirmed,
            "controls": controls(),
        }
        return web.json_response(body)

    async def reboot(request: web.Request) -> web.Response:
        stream = _stream(request)
        name = _name(request.app, stream)
        await _cloud(name, client.reboot(stream.device_id))
        _LOGGER.info("reboot of %s requested", name)
        body: RebootBody = {
            "stream": stream.name,
            "id": stream.device_id,
            "message": f"reboot sent: {name} restarts in 10 to 60 s",
        }
        return web.json_response(body)

    app.router.add_get("/api/devices/{stream}/settings", get_settings)
    app.router.add_post("/api/devices/{stream}/settings", post_settings)
    app.router.add_post("/api/devices/{stream}/reboot", reboot)
