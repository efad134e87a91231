"""``POST /api/webrtc?src=NAME``: a viewer's SDP offer in, the answer out.

Two request forms, as go2rtc accepts them:

* WHEP: an ``application/sdp`` body gets ``201 Created`` with the answer as ``application/sdp``
  and a ``Location`` naming the session; ``DELETE`` on that location ends it. aiortc does not
  trickle, so there is no PATCH: the answer already holds every candidate (aiohttp says 405).
* go2rtc's JSON: ``{"type": "offer", "sdp": ...}`` gets ``{"type": "answer", "sdp": ...}``;
  such a session ends when the peer goes away.

Push-to-talk: a WHEP viewer whose offer sends audio (the page offers its audio ``sendrecv``)
``POST``s ``{"action": "start"}`` to ``{location}/talk`` when the talk button goes down, and
attaches its microphone once that answers 200; ``{"action": "stop"}`` when it comes up. Start
claims the doorbell through the talk service (409 someone is already talking, 501 the doorbell
takes no audio, 503 it cannot be reached); stop always answers 200. ``GET`` on it says whether
the talk still goes on, and if not why it ended (the call dropped, no audio came for a while),
so a page holding the button learns that the doorbell no longer hears it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypedDict

from aiohttp import web

from bridge.errors import UnknownDevice
from bridge.media.aiortc_patch import parse_host_addresses
from bridge.media.hub import Stream
from bridge.media.webrtc_source import choose_ice_servers
from bridge.routes.common import TALK, error, stream_from_query
from bridge.talk import TalkError
from bridge.webrtc import (
    OfferError,
    StreamUnavailable,
    ViewerLimitError,
    WebRtcOptions,
    WebRtcOutput,
    WebRtcStats,
    WhepViewer,
)
from bridge.webrtc.offer import MAX_SDP

__all__ = ["WEBRTC", "StreamWebRtc", "setup", "stream_stats"]

_LOGGER = logging.getLogger(__name__)

WEBRTC = web.AppKey("webrtc", WebRtcOutput)
_SESSION_ROUTE = "webrtc-session"
_JSON_FORM = 'expected {"type": "offer", "sdp": "..."}'
# The body is read whole, so it is capped here rather than at aiohttp's 1 MB default. Room for
# JSON escaping of an SDP at its own limit; offers between the two get parse_offer's 400 that
# says why, anything larger a 413 before it is read.
_MAX_BODY = 4 * MAX_SDP
# Talk errors by the status the talk service gives them.
_TALK_STATUS: dict[int, type[web.HTTPException]] = {
    409: web.HTTPConflict,
    501: web.HTTPNotImplemented,
    503: web.HTTPServiceUnavailable,
}


class StreamWebRtc(TypedDict, total=False):
    """The ``webrtc`` key of a stream's entry in ``/api/streams``; absent without the output."""

    webrtc: WebRtcStats


def _too_large(size: int) -> web.HTTPException:
    body = json.dumps({"error": f"the offer is over {_MAX_BODY} bytes", "limit": _MAX_BODY})
    return web.HTTPRequestEntityTooLarge(
        max_size=_MAX_BODY, actual_size=size, text=body, content_type="application/json"
    )


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise _too_large(request.content_length)
    data = bytearray()
    while chunk := await request.content.read(16384):
        data += chunk
        if len(data) > _MAX_BODY:  # chunked: no Content-Length to refuse up front
            raise _too_large(len(data))
    return bytes(data)


async def _create(output: WebRtcOutput, stream: Stream, sdp: str) -> tuple[WhepViewer, str]:
    try:
        return await output.create(stream, sdp)
    except OfferError as err:
        raise error(web.HTTPBadRequest, str(err)) from err
    except (ViewerLimitError, StreamUnavailable) as err:
        unavailable = error(web.HTTPServiceUnavailable, str(err))
        unavailable.headers["Retry-After"] = "5"
        raise unavailable from err


async def _offer(request: web.Request) -> web.Response:
    stream = stream_from_query(request)
    output = request.app[WEBRTC]
    try:
        body = (await _read_body(request)).decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(web.HTTPBadRequest, "the body is not UTF-8 text") from err
    kind = request.content_type
    if kind == "application/json" or (kind != "application/sdp" and body.lstrip()[:1] == "{"):
        try:
            message = json.loads(body)
        except (ValueError, RecursionError) as err:  # RecursionError: "[[[[..." nested deep
            raise error(web.HTTPBadRequest, f"the body is not JSON: {str(err)[:80]}") from None
        if (
            not isinstance(message, dict)
            or message.get("type") != "offer"
            or not isinstance(message.get("sdp"), str)
        ):
            raise error(web.HTTPBadRequest, _JSON_FORM)
        _session, answer = await _create(output, stream, message["sdp"])
        return web.json_response({"type": "answer", "sdp": answer})
    session, answer = await _create(output, stream, body)
    location = request.app.router[_SESSION_ROUTE].url_for(session_id=session.id)
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": str(location)},
    )


async def _delete(request: web.Request) -> web.Response:
    if not await request.app[WEBRTC].end(request.match_info["session_id"]):
        raise error(web.HTTPNotFound, "no such WebRTC session (it may have ended already)")
    return web.Response(status=200)


def _viewer(request: web.Request) -> WhepViewer:
    viewer = request.app[WEBRTC].get(request.match_info["session_id"])
    if viewer is None:
        raise error(web.HTTPNotFound, "no such WebRTC session (it may have ended already)")
    return viewer


async def _talk_state(request: web.Request) -> web.Response:
    talk = _viewer(request).talk
    return web.json_response({"talking": talk.talking, "ended": talk.ended_reason or None})


async def _talk(request: web.Request) -> web.Response:
    viewer = _viewer(request)
    try:
        message = await request.json()
    except (ValueError, RecursionError):
        message = None
    action = message.get("action") if isinstance(message, dict) else None
    if action == "stop":
        await viewer.talk.stop()
        return web.json_response({"talking": False})
    if action != "start":
        raise error(web.HTTPBadRequest, 'expected {"action": "start"} or {"action": "stop"}')
    if not viewer.talk.available:
        raise error(web.HTTPBadRequest, "this session's offer sends no audio (offer it sendrecv)")
    if viewer.talk.talking:
        return web.json_response({"talking": True})
    service = request.app.get(TALK)
    if service is None:
        raise error(web.HTTPNotImplemented, "talk is not available in this bridge")
    stream = viewer.stream.name
    try:
        session = await service.open(stream, f"page {viewer.label}")
    except TalkError as err:
        _LOGGER.info("talk from %s to %s refused: %s", viewer.label, stream, err)
        raise error(_TALK_STATUS.get(err.status, web.HTTPInternalServerError), str(err)) from None
    except UnknownDevice as err:
        raise error(web.HTTPNotFound, str(err)) from None
    try:
        await viewer.start_talk(session)  # closes the session itself if the viewer left
    except StreamUnavailable as err:
        raise error(web.HTTPNotFound, str(err)) from None
    return web.json_response({"talking": True, "codec": session.codec})


def stream_stats(app: web.Application, stream: Stream) -> StreamWebRtc:
    """``{"webrtc": ...}`` for the status API: sessions, their state, whether audio is relayed."""
    output = app.get(WEBRTC)
    return {"webrtc": output.stats(stream)} if output is not None else {}


def setup(
    app: web.Application,
    options: WebRtcOptions | None = None,
    *,
    ice_servers: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Add the output's context (``WEBRTC``) and the offer and session routes; ``ice_servers``
    is browser-style (LAN: none)."""
    options = options or WebRtcOptions()

    async def output_context(app: web.Application) -> AsyncIterator[None]:
        output = app[WEBRTC] = WebRtcOutput(
            max_sessions_per_stream=options.max_sessions,
            ice_servers=choose_ice_servers(ice_servers),
            host_addresses=parse_host_addresses(options.ice_host_addresses),
        )
        try:
            yield
        finally:
            await output.close()

    app.cleanup_ctx.append(output_context)
    app.router.add_post("/api/webrtc", _offer)
    app.router.add_delete("/api/webrtc/session/{session_id}", _delete, name=_SESSION_ROUTE)
    app.router.add_post("/api/webrtc/session/{session_id}/talk", _talk)
    app.router.add_get("/api/webrtc/session/{session_id}/talk", _talk_state)
