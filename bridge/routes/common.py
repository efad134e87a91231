"""What every route needs: the hub and the doorbells on the app, finding a stream from
``?src=``, and numbers from the URL that are checked before they reach int(), SQLite or
datetime."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from bridge.media.hub import Hub, Stream
from bridge.skybell.models import Device
from bridge.talk import TalkService

__all__ = [
    "DEVICES",
    "HUB",
    "MAX_ID",
    "MQTT_STATS",
    "TALK",
    "error",
    "find_stream",
    "int_query",
    "path_id",
    "stream_from_query",
]

HUB = web.AppKey("hub", Hub)
# The account's doorbells as listed at start, one hub stream each (``bridge.routes.streams``).
DEVICES: web.AppKey[list[Device]] = web.AppKey("devices")
# Set by the MQTT part while it runs, read by /metrics: a function returning {"connected": 0 or 1,
# "dropped": messages dropped from the full queue since start, "queued": messages waiting}.
MQTT_STATS: web.AppKey[Callable[[], Mapping[str, float]]] = web.AppKey("mqtt_stats")
# Talking to doorbells (``bridge.routes.talk``): every talk source opens its turn here.
TALK = web.AppKey("talk", TalkService)
MAX_ID = 2**63 - 1  # SQLite's INTEGER: larger ids raise OverflowError when bound
# ASCII only: int() also accepts other scripts' digits ("٣"), str.isdigit() even "²" which
# int() then refuses. The length bound keeps int() of a megabyte of digits off the event loop.
_INTEGER = re.compile(r"-?[0-9]{1,20}")


def error(status: type[web.HTTPException], message: str, **extra: Any) -> web.HTTPException:
    """An HTTP error whose JSON body says what went wrong, for clients and humans alike."""
    body = json.dumps({"error": message, **extra})
    return status(text=body, content_type="application/json")


def find_stream(hub: Hub, src: str) -> Stream:
    """The stream named ``src`` (name or device id), or a 400/404 that says which exist."""
    known = sorted(s.name for s in hub.streams)
    if not src:
        raise error(web.HTTPBadRequest, "missing ?src=STREAM", streams=known)
    stream = hub.get(src)
    if stream is None:
        raise error(web.HTTPNotFound, f"unknown stream {src!r}", streams=known)
    return stream


def stream_from_query(request: web.Request) -> Stream:
    """The stream named by the ``src`` query parameter, or a 400/404 that says which exist."""
    return find_stream(request.app[HUB], request.query.get("src", "").strip())


def int_query(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    """The integer query parameter ``name`` within [lo, hi], ``default`` if absent, else a 400."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (_INTEGER.fullmatch(raw) and lo <= int(raw) <= hi):
        raise error(web.HTTPBadRequest, f"{name} must be an integer from {lo} to {hi}")
    return int(raw)


def path_id(request: web.Request, key: str = "id", what: str = "clip") -> int:
    """A numeric id from the URL path; one outside the 64-bit range names nothing (404)."""
    raw = request.match_info[key]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) <= MAX_ID):
        shown = raw if len(raw) <= 24 else raw[:20] + "..."
        raise error(web.HTTPNotFound, f"no {what} {shown}")
    return int(raw)
