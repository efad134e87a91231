"""HTTP glue for HLS / LL-HLS (``bridge.hls``).

URLs (all GET; ``src`` names the stream, by name or device id, and rides along in every URL so
the relative URIs resolve behind a reverse proxy with any path prefix):

- ``/api/stream.m3u8?src=NAME`` (go2rtc's path): a multivariant playlist with CODECS and
  RESOLUTION, pointing at ``hls/live.m3u8?src=NAME``. Add ``&ll=0`` to point it at the plain
  playlist instead.
- ``/api/hls/live.m3u8?src=NAME``: the media playlist. Low-latency by default (parts, preload
  hint, blocking reload with ``_HLS_msn``/``_HLS_part``); players that do not speak LL-HLS ignore
  those tags and play the full segments. ``&ll=0`` gives a plain playlist (full segments only),
  for strict or old clients; ffmpeg plays either with ``-c copy``.
- ``/api/hls/{session}/init-{V}.mp4``, ``seg-{N}.m4s``, ``part-{N}.{I}.m4s`` (each with
  ``?src=NAME``): the init section, segments and parts. ``session`` changes whenever the packager
  restarts, so a cached segment of an earlier run is never mistaken for a new one.

Playlists are ``no-cache``; media is immutable under its URL and cacheable for a minute.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

from aiohttp import web

from bridge.hls import (
    BadRequest,
    HlsOptions,
    HlsPackager,
    HlsRegistry,
    NotAvailable,
    parse_blocking,
)
from bridge.routes.common import error, stream_from_query

__all__ = ["HLS", "setup"]

HLS = web.AppKey("hls", HlsRegistry)

_PLAYLIST = "application/vnd.apple.mpegurl"
_NO_CACHE = {"Cache-Control": "no-cache"}
_CACHEABLE = {"Cache-Control": "public, max-age=60"}


def setup(app: web.Application, options: HlsOptions | None = None) -> None:
    """Add the packager registry's context (``HLS``) and the HLS routes; packagers start on
    the first request and stop when idle, and all of them at the end."""

    async def registry_context(app: web.Application) -> AsyncIterator[None]:
        registry = app[HLS] = HlsRegistry(options)
        try:
            yield
        finally:
            await registry.close()

    app.cleanup_ctx.append(registry_context)
    app.router.add_get("/api/stream.m3u8", _multivariant)
    app.router.add_get("/api/hls/live.m3u8", _media_playlist)
    # Numbers are bounded: int() of a huge digit string is slow, then refused.
    media = r"/api/hls/{session:[0-9a-f]{1,32}}/"
    app.router.add_get(media + r"init-{version:\d{1,9}}.mp4", _init)
    app.router.add_get(media + r"seg-{msn:\d{1,9}}.m4s", _segment)
    app.router.add_get(media + r"part-{msn:\d{1,9}}.{part:\d{1,9}}.m4s", _part)


def _src_query(request: web.Request, *, plain: bool = False) -> str:
    params = {"src": request.query.get("src", "")}
    if plain:
        params["ll"] = "0"
    return "?" + urlencode(params)


def _low_latency(request: web.Request) -> bool:
    return request.query.get("ll", "1").lower() not in ("0", "false", "no", "off")


def _unavailable(err: NotAvailable) -> web.HTTPException:
    exc = error(web.HTTPServiceUnavailable, str(err))
    exc.headers["Retry-After"] = "1"
    exc.headers.update(_NO_CACHE)
    return exc


def _playlist(text: str) -> web.Response:
    return web.Response(text=text, content_type=_PLAYLIST, headers=_NO_CACHE)


def _media(body: bytes | memoryview | None, what: str) -> web.Response:
    if body is None:
        raise error(web.HTTPNotFound, f"{what} is not available (expired, or never made)")
    return web.Response(body=body, content_type="video/mp4", headers=_CACHEABLE)


async def _multivariant(request: web.Request) -> web.Response:
    stream = stream_from_query(request)
    packager = request.app[HLS].get(stream)
    uri = "hls/live.m3u8" + _src_query(request, plain=not _low_latency(request))
    try:
        return _playlist(await packager.multivariant(uri))
    except NotAvailable as err:
        raise _unavailable(err) from None


async def _media_playlist(request: web.Request) -> web.Response:
    stream = stream_from_query(request)
    try:
        block = parse_blocking(request.query)
        packager = request.app[HLS].get(stream)
        text = await packager.media(
            _src_query(request), low_latency=_low_latency(request), block=block
        )
    except BadRequest as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    except NotAvailable as err:
        raise _unavailable(err) from None
    return _playlist(text)


def _packager(request: web.Request) -> HlsPackager:
    stream = stream_from_query(request)
    packager = request.app[HLS].find(stream, request.match_info["session"])
    if packager is None:
        raise error(
            web.HTTPNotFound,
            f"HLS session for {stream.name!r} has ended; reload the playlist",
        )
    return packager


async def _init(request: web.Request) -> web.Response:
    version = int(request.match_info["version"])
    return _media(_packager(request).init_section(version), f"init section {version}")


async def _segment(request: web.Request) -> web.Response:
    msn = int(request.match_info["msn"])
    return _media(await _packager(request).segment(msn), f"segment {msn}")


async def _part(request: web.Request) -> web.Response:
    msn, index = int(request.match_info["msn"]), int(request.match_info["part"])
    return _media(await _packager(request).part(msn, index), f"part {msn}.{index}")
