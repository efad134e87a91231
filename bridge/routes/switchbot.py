"""``POST /api/switchbot/webhook/{token}``: SwitchBot's events (motion, contact, lock, keypad, ...).

SwitchBot signs nothing and sends no credential, so the random path token
(``switchbot.webhook_token``) is the credential. Anything else is answered as if the route did
not exist (404, the router's own body) whether or not a token is set, so guessing learns nothing;
the comparison is constant-time. A body that is not a SwitchBot event gets a one-line 400 and the
bridge goes on. Accepted events go into the event bus like SkyBell's: the log, the SSE feed, the
page and the rules (``on = ["switchbot.motion"]``) see them.

The path is exempt from Basic auth and the Host check (see ``bridge.app``): SwitchBot's servers
post to the public name the user registered and cannot send a password.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

from aiohttp import web

from bridge.automation.switchbot_events import (
    WEBHOOK_PREFIX,
    parse_switchbot_event,
    webhook_path,
)
from bridge.redact import Secret
from bridge.routes.auth import mark_public
from bridge.routes.automation import RULES
from bridge.routes.common import error
from bridge.routes.events import EVENTS
from bridge.skybell.payloads import PayloadError

__all__ = ["WEBHOOK_PREFIX", "setup", "webhook_path"]

_LOGGER = logging.getLogger(__name__)

_MAX_BODY = 16384  # SwitchBot's events are a few hundred bytes
_NAMES_TIMEOUT = 3.0  # naming the device must not hold SwitchBot's delivery for long


def _bad(message: str) -> web.HTTPException:
    return error(web.HTTPBadRequest, " ".join(message.split())[:200])


async def _read(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise _bad(f"the body is over {_MAX_BODY} bytes")
    data = bytearray()
    while chunk := await request.content.read(4096):
        data += chunk
        if len(data) > _MAX_BODY:
            raise _bad(f"the body is over {_MAX_BODY} bytes")
    return bytes(data)


async def _name(app: web.Application, device_id: str) -> str | None:
    """The account's name for a SwitchBot device, if the rules engine can tell it."""
    engine = app.get(RULES)
    if engine is None:
        return None
    try:
        async with asyncio.timeout(_NAMES_TIMEOUT):
            return await engine.switchbot_name(device_id)
    except TimeoutError:
        return None


def setup(app: web.Application, token: Secret | None) -> None:
    """Add the receiver; with ``token`` None every call is a 404 (the receiver is off)."""
    expected = webhook_path(token).removeprefix(WEBHOOK_PREFIX).encode() if token else None

    async def receive(request: web.Request) -> web.Response:
        given = request.match_info["token"].encode("utf-8", "surrogatepass")
        if expected is None or not hmac.compare_digest(given, expected):
            raise web.HTTPNotFound()  # the same answer as for any path that does not exist
        body = await _read(request)
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as err:
            raise _bad(f"the body is not JSON: {err}") from None
        try:
            event = parse_switchbot_event(payload)
        except PayloadError as err:
            _LOGGER.info("refused a SwitchBot event: %s", err)
            raise _bad(str(err)) from None
        name = await _name(request.app, event.device_id)
        if name:
            event.payload["name"] = name  # for rules' switchbot_devices and the page
        published = request.app[EVENTS].publish(event)
        stored = published.event
        return web.json_response(
            {
                "ok": True,
                "event_id": stored.id,
                "type": stored.type,
                "device": stored.device,
                "duplicate": not published.new,
            }
        )

    route = app.router.add_post(WEBHOOK_PREFIX + "{token}", receive)
    if route.resource is not None:
        mark_public(app, route.resource)  # a wrong token is a 404 too with a password set
