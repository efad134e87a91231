"""``POST /api/talk?src=NAME``: play an uploaded audio file to the visitor.

The body is any audio file PyAV decodes (WAV, Ogg/Opus, MP3, M4A...). It is refused before
it is read when its Content-Length is over the limit (413), read with the same cap otherwise,
decoded in a thread (415 when it is not audio, 413 beyond ``talk.max_seconds``), and then
played in real time; the answer comes once it has been played:
``{"played_seconds": 4.02, "stream": "front-door", "codec": "audio/opus"}``.
Someone else talking is 409, a doorbell that cannot be reached 503 (with the reason), one that
takes no audio 501; every error is a one-line JSON ``{"error": ...}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import av
from aiohttp import web

from bridge.routes.common import HUB, TALK, error, stream_from_query
from bridge.talk import TalkError, TalkOptions, TalkService, decode_audio

__all__ = ["TALK_PATH", "setup"]

_LOGGER = logging.getLogger(__name__)

TALK_PATH = "/api/talk"
_OPTIONS: web.AppKey[TalkOptions] = web.AppKey("talk_options")


def _too_big(cap: int, size: int) -> web.HTTPException:
    body = json.dumps({"error": f"the audio body is over {cap} bytes", "limit": cap})
    return web.HTTPRequestEntityTooLarge(
        max_size=cap, actual_size=size, text=body, content_type="application/json"
    )


async def _read_body(request: web.Request, cap: int) -> bytes:
    if request.content_length is not None and request.content_length > cap:
        raise _too_big(cap, request.content_length)
    data = bytearray()
    while chunk := await request.content.read(65536):
        data += chunk
        if len(data) > cap:
            raise _too_big(cap, len(data))
    return bytes(data)


def _http_error(err: TalkError) -> web.HTTPException:
    """The talk error as its HTTP status with a one-line JSON body."""
    classes: dict[int, type[web.HTTPException]] = {
        409: web.HTTPConflict,
        413: web.HTTPRequestEntityTooLarge,
        415: web.HTTPUnsupportedMediaType,
        501: web.HTTPNotImplemented,
        503: web.HTTPServiceUnavailable,
    }
    status = classes.get(err.status, web.HTTPInternalServerError)
    if status is web.HTTPRequestEntityTooLarge:
        body = json.dumps({"error": str(err)})
        return web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=body, content_type="application/json"
        )
    return error(status, str(err))


async def _frames(
    request: web.Request, frames: Sequence[av.AudioFrame]
) -> AsyncIterator[av.AudioFrame]:
    """The frames, until the client goes away: hanging up (Ctrl-C on curl) stops the talk.

    aiohttp does not cancel a handler whose client left, so it is checked here, per frame.
    """
    for frame in frames:
        transport = request.transport
        if transport is None or transport.is_closing():
            _LOGGER.info("talk: the client hung up; stopping")
            return
        yield frame


async def _talk(request: web.Request) -> web.Response:
    stream = stream_from_query(request)  # 400/404 before the body is read
    options = request.app[_OPTIONS]
    service = request.app[TALK]
    busy = service.talker(stream.name)
    if busy is not None:  # say so before taking a large upload
        raise error(web.HTTPConflict, f"someone is already talking to {stream.name} ({busy})")
    data = await _read_body(request, options.max_body_bytes)
    try:
        frames = await decode_audio(data, options.max_seconds)
        source = f"api {request.remote or '?'}"
        session = await service.open(stream.name, source)
        async with session:
            await session.play(_frames(request, frames))
            played = session.seconds
            codec = session.codec
    except TalkError as err:
        _LOGGER.info("talk to %s refused: %s", stream.name, err)
        raise _http_error(err) from None
    return web.json_response(
        {"played_seconds": round(played, 3), "stream": stream.name, "codec": codec}
    )


def setup(app: web.Application, options: TalkOptions) -> None:
    """Add ``POST /api/talk`` and the talk service (after the hub: it wakes its streams)."""
    app[_OPTIONS] = options

    async def service_ctx(app: web.Application) -> AsyncGenerator[None, None]:
        service = TalkService(app[HUB], wake_timeout=options.wake_timeout)
        app[TALK] = service
        yield
        await service.close()

    app.cleanup_ctx.append(service_ctx)
    app.router.add_post(TALK_PATH, _talk)
