"""What every output route needs: the hub on the app, and finding a stream from ``?src=``."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bridge.media.hub import Hub, Stream

__all__ = ["HUB", "error", "find_stream", "stream_from_query"]

HUB = web.AppKey("hub", Hub)


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
