"""Publish targets: the ``[[publish]]`` pushes and go2rtc's ad-hoc ``POST/DELETE /api/streams``.

``setup`` must come after the hub's: its context looks up each target's stream among the
account's doorbells (a name that is none of them is a config error, raised at start) and starts
the pushes; at the end it stops them before the hub ends the live calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import cast, get_args

from aiohttp import web

from bridge.errors import ConfigError
from bridge.publish import Publisher, PublishStats, PublishTarget, safe_url, url_problem
from bridge.publish.options import EVERY_STREAM, PublishAudio, PublishMode, for_stream
from bridge.routes.common import HUB, error, find_stream

__all__ = ["PUBLISHERS", "setup", "stream_publish_stats"]

_LOGGER = logging.getLogger(__name__)
# Every running push, configured and ad-hoc, in the order they started.
PUBLISHERS: web.AppKey[list[Publisher]] = web.AppKey("publishers")
_MAX_ADHOC = 64  # a script looping on POST must not start a muxer process per call without end


def stream_publish_stats(app: web.Application, stream_name: str) -> list[PublishStats]:
    """The pushes of one stream, for its ``/api/streams`` entry and ``/metrics``."""
    publishers = app.get(PUBLISHERS)
    if publishers is None:  # an app built without publishing, or before its context ran
        return []
    return [p.stats() for p in publishers if p.stream.name == stream_name]


def _find(app: web.Application, stream_name: str, url: str) -> Publisher | None:
    return next(
        (p for p in app[PUBLISHERS] if p.stream.name == stream_name and p.target.url == url),
        None,
    )


async def _start(request: web.Request) -> web.Response:
    """``POST /api/streams?src=NAME&dst=URL[&mode=while_live|always][&audio=aac|none]``."""
    app = request.app
    src, dst = request.query.get("src", ""), request.query.get("dst", "")
    stream = find_stream(app[HUB], src)
    problem = url_problem(dst)
    if problem is not None:
        raise error(web.HTTPBadRequest, f"dst: {problem}")
    # An explicit request to push starts it now, as go2rtc's does: "always" unless asked.
    mode, audio = request.query.get("mode", "always"), request.query.get("audio", "aac")
    if mode not in get_args(PublishMode):
        raise error(web.HTTPBadRequest, "mode must be while_live or always")
    if audio not in get_args(PublishAudio):
        raise error(web.HTTPBadRequest, "audio must be aac or none")
    found = _find(app, stream.name, dst)
    if found is None:
        if len(app[PUBLISHERS]) >= _MAX_ADHOC:
            raise error(web.HTTPBadRequest, f"at most {_MAX_ADHOC} publish targets")
        target = PublishTarget(stream.name, dst, cast(PublishMode, mode), cast(PublishAudio, audio))
        found = Publisher(stream, target)
        app[PUBLISHERS].append(found)
        found.start()
        _LOGGER.info("publish %s to %s: started", stream.name, found.url)
    return web.json_response(found.stats())


async def _stop(request: web.Request) -> web.Response:
    """``DELETE /api/streams?src=NAME&dst=URL``: stop that push."""
    app = request.app
    src, dst = request.query.get("src", ""), request.query.get("dst", "")
    stream = find_stream(app[HUB], src)
    found = _find(app, stream.name, dst)
    if found is None:
        raise error(web.HTTPNotFound, f"{stream.name} is not published to {safe_url(dst)}")
    app[PUBLISHERS].remove(found)
    await found.close()
    _LOGGER.info("publish %s to %s: stopped", stream.name, found.url)
    return web.json_response(found.stats())


def setup(app: web.Application, targets: tuple[PublishTarget, ...]) -> None:
    """Start the configured pushes once the hub knows the doorbells; add the ad-hoc routes."""

    async def publish_context(app: web.Application) -> AsyncIterator[None]:
        hub = app[HUB]
        publishers: list[Publisher] = []
        for i, target in enumerate(targets):
            if target.stream == EVERY_STREAM:
                streams = list(hub.streams)
            elif (stream := hub.get(target.stream)) is not None:
                streams = [stream]
            else:
                known = ", ".join(s.name for s in hub.streams) or "none"
                raise ConfigError(
                    f"publish[{i}].stream",
                    f"{target.stream!r} is not a doorbell of this account; streams: {known}",
                )
            publishers += [Publisher(s, for_stream(target, s.name)) for s in streams]
        app[PUBLISHERS] = publishers
        for publisher in publishers:
            publisher.start()
        try:
            yield
        finally:
            running: list[Publisher] = app[PUBLISHERS]
            for publisher in running[:]:
                await publisher.close()

    app.cleanup_ctx.append(publish_context)
    app.router.add_post("/api/streams", _start)
    app.router.add_delete("/api/streams", _stop)
