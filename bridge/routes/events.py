"""HTTP glue for doorbell events: SkyBell's webhook, the event log API and a server-sent feed.

- ``POST|GET /api/skybell/webhook``: SkyBell's trigger calls. The shared secret header is checked
  first (401 missing, 403 wrong or none configured), then the body size (413), then the shape
  (400). An id that is not on the account after a refresh is still accepted (202, not 404): a 4xx
  counts towards the 25 failures after which SkyBell disables the trigger for every device, and
  the event is worth keeping in the log anyway; rules keyed on a device simply do not match it.
- ``GET /api/events``: the log, filtered by device, type, since/until, paged by limit/offset.
- ``GET /api/events/stream``: ``text/event-stream``, one ``event: <type>`` per new event.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from pathlib import Path

from aiohttp import web

from bridge.automation.switchbot_events import SWITCHBOT_EVENT_TYPES
from bridge.events.bus import EventQueue
from bridge.events.options import EventOptions
from bridge.events.service import EventService
from bridge.routes.common import DEVICES, error, int_query
from bridge.skybell.client import SkyBellClient
from bridge.skybell.models import Device
from bridge.skybell.payloads import (
    EVENT_TYPES,
    Event,
    PayloadError,
    event_from_query,
    event_from_webhook,
    parse_time,
)
from bridge.skybell.triggers import WEBHOOK_PATH

__all__ = ["EVENTS", "WEBHOOK_PATH", "setup"]

_LOGGER = logging.getLogger(__name__)

EVENTS = web.AppKey("events", EventService)
_FEEDS: web.AppKey[set[EventQueue]] = web.AppKey("event_feeds")
_KEEPALIVE: web.AppKey[float] = web.AppKey("event_keepalive")
_STRANGERS: web.AppKey[set[str]] = web.AppKey("event_strangers")  # unknown ids warned about
_MAX_LIMIT = 500
_RETRY_MS = 3000  # how long a browser's EventSource waits before reconnecting


# -- webhook -----------------------------------------------------------------------------------


def _check_secret(request: web.Request, service: EventService) -> None:
    opts = service.options
    if opts.webhook_secret is None:
        raise error(web.HTTPForbidden, "the webhook is off: set events.webhook_secret")
    given = request.headers.get(opts.webhook_header)
    if given is None:
        raise error(web.HTTPUnauthorized, f"missing the {opts.webhook_header} header")
    # surrogatepass: aiohttp decodes header bytes such as \xff\xfe to lone surrogates, which a
    # plain encode() would raise on (a 500); as bytes they simply do not match.
    expected = opts.webhook_secret.reveal().encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected):
        raise error(web.HTTPForbidden, f"wrong {opts.webhook_header} header")


def _too_big(cap: int, size: int) -> web.HTTPException:
    body = json.dumps({"error": f"the body is over {cap} bytes", "limit": cap})
    return web.HTTPRequestEntityTooLarge(
        max_size=cap, actual_size=size, text=body, content_type="application/json"
    )


async def _read_capped(request: web.Request, cap: int) -> bytes:
    if request.content_length is not None and request.content_length > cap:
        raise _too_big(cap, request.content_length)
    data = bytearray()
    while chunk := await request.content.read(16384):
        data += chunk
        if len(data) > cap:  # chunked bodies have no Content-Length to refuse early
            raise _too_big(cap, len(data))
    return bytes(data)


def _parser(request: web.Request, body: bytes) -> Callable[[EventService], Event]:
    if not body.strip():
        # Only POST triggers carry a body; an empty one is treated like a GET.
        return lambda service: event_from_query(request.query, service.directory.by_id)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as err:  # RecursionError: "[[[[..." nested too deep
        raise error(web.HTTPBadRequest, f"the body is not JSON: {str(err)[:80]}") from None
    return lambda service: event_from_webhook(payload, service.directory.by_id)


async def _webhook(request: web.Request) -> web.Response:
    service = request.app[EVENTS]
    try:
        _check_secret(request, service)
        body = b""
        if request.method == "POST":
            body = await _read_capped(request, service.options.webhook_max_bytes)
        build = _parser(request, body)
        event = build(service)
        if event.device_id and not event.known_device:
            if await service.directory.find_id(event.device_id) is not None:
                event = build(service)
            elif service.directory.foreign_id(event.device_id):
                # A stale trigger of another bridge instance's doorbell: not logged, no rules.
                return web.json_response(
                    {"ok": True, "ignored": "another bridge instance's doorbell"}, status=202
                )
            else:
                _LOGGER.warning(
                    "webhook for device %s, which is not on the account", event.device_id
                )
        published = service.publish(event)
    except PayloadError as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    except web.HTTPException:
        raise
    except Exception:  # never let a strange payload take the handler down without an answer
        _LOGGER.exception("webhook handling failed")
        raise error(web.HTTPInternalServerError, "internal error") from None
    stored = published.event
    return web.json_response(
        {
            "ok": True,
            "event_id": stored.id,
            "type": stored.type,
            "device": stored.device,
            "duplicate": not published.new,
            "known_device": stored.known_device,
        },
        status=200 if stored.known_device else 202,
    )


# -- event log ---------------------------------------------------------------------------------


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    when = parse_time(raw)
    if when is None:
        raise error(web.HTTPBadRequest, f"{name} must be an ISO 8601 time or JS milliseconds")
    return when


def _types_param(request: web.Request) -> set[str]:
    types = {t for t in request.query.get("type", "").split(",") if t}
    known = (*EVENT_TYPES, *SWITCHBOT_EVENT_TYPES)
    unknown = types - set(known)
    if unknown:
        raise error(web.HTTPBadRequest, f"unknown type {sorted(unknown)[0]!r}", types=list(known))
    return types


async def _events(request: web.Request) -> web.Response:
    service = request.app[EVENTS]
    if service.log is None:
        raise error(web.HTTPServiceUnavailable, "the event log is off")
    types = _types_param(request)
    if len(types) > 1:
        raise error(web.HTTPBadRequest, "the log is filtered by one type at a time")
    page = await service.log.query(
        device=request.query.get("device") or None,
        type=next(iter(types), None),
        since=_time_param(request, "since"),
        until=_time_param(request, "until"),
        limit=int_query(request, "limit", 50, 1, _MAX_LIMIT),
        offset=int_query(request, "offset", 0, 0, 10**9),
    )
    return web.json_response(page.as_dict())


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[EVENTS].stats())


# -- server-sent events ------------------------------------------------------------------------


def _sse(event: Event) -> bytes:
    data = json.dumps(event.as_dict(), default=str)
    return f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n".encode()


async def _stream(request: web.Request) -> web.StreamResponse:
    service = request.app[EVENTS]
    types = _types_param(request)
    device = request.query.get("device") or None
    keepalive = request.app[_KEEPALIVE]
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold events back
        }
    )
    queue = service.bus.queue(f"sse:{request.remote}")
    feeds = request.app[_FEEDS]
    feeds.add(queue)
    try:
        await resp.prepare(request)
        await resp.write(f"retry: {_RETRY_MS}\n: connected\n\n".encode())
        while True:
            try:
                async with asyncio.timeout(keepalive):
                    item = await queue.get()
            except TimeoutError:
                # Also how a vanished client is noticed: the write fails.
                await resp.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            event = item[1]
            if (types and event.type not in types) or (
                device and device not in (event.device, event.device_id)
            ):
                continue
            await resp.write(_sse(event))
    except ConnectionError:
        pass  # the client went away
    finally:
        queue.close()
        feeds.discard(queue)
    return resp


# -- setup -------------------------------------------------------------------------------------


def setup(
    app: web.Application,
    options: EventOptions,
    client: SkyBellClient | None,
    *,
    devices: Iterable[Device] | None = None,
    log_path: Path | None = None,
    keepalive: float = 15.0,
) -> None:
    """The event service's context (``EVENTS``), the webhook, ``/api/events`` and its feed.

    The service lists ``devices``, or else the hub's (``DEVICES``: then this comes after
    ``bridge.routes.streams``); it keeps its log at ``log_path`` (None: no log).
    """
    app[_FEEDS] = set[EventQueue]()
    app[_KEEPALIVE] = keepalive
    app[_STRANGERS] = set[str]()
    app.router.add_post(WEBHOOK_PATH, _webhook)
    app.router.add_get(WEBHOOK_PATH, _webhook)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/api/events/stream", _stream)
    app.router.add_get("/api/events/stats", _stats)

    async def service_context(app: web.Application) -> AsyncIterator[None]:
        known = list(devices) if devices is not None else app[DEVICES]
        service = app[EVENTS] = EventService(client, known, options, log_path=log_path)
        try:
            await service.start()
            yield
        finally:
            # The sources stop, the bus lets the log write what is queued, then the log closes.
            await service.close()

    async def end_feeds(app: web.Application) -> None:
        # Open feeds would hold shutdown for aiohttp's whole grace period.
        feeds: set[EventQueue] = app[_FEEDS]
        for queue in list(feeds):
            queue.close()

    app.cleanup_ctx.append(service_context)
    app.on_shutdown.append(end_feeds)
