"""Activity videos for the simulated cloud: ``GET /_sim/videos/{activity_id}.mp4``.

``SimCloud`` hands out presigned-looking URLs for each activity's MP4; this serves them. Each
video is a real, short MP4 (H.264 test card with the activity's time burned in, AAC tone), made
with libx264 in a thread the first time it is asked for and then cached. Like S3 it honours
``Range: bytes=N-`` (206 with ``Content-Range``) and refuses an expired URL with 403.

``SimVideos.faults`` makes downloads fail the ways real ones do: 5xx answers, a body cut off
mid-way, a body that stalls, a 200 that ignores the Range header, an expired URL, an HTML
page or a broken file instead of an MP4.
The switches are also reachable at ``/_sim/video_faults`` for a standalone simulator.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import math
import os
import re
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import av
import numpy as np
from aiohttp import web

from bridge.sim.cloud import SimCloud
from bridge.sim.picture import render_frame

__all__ = ["SimVideos", "VideoFaults", "render_video"]

_LOGGER = logging.getLogger(__name__)
_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)$")
_CACHED = 64  # videos kept in memory (about 60 kB each)
_AUDIO_RATE = 16000


@dataclass
class VideoFaults:
    """Switches that make video downloads misbehave; counters apply to the next N requests."""

    server_errors: int = 0  # answer 503
    cut_bodies: int = 0  # send half the body, then drop the connection
    stalls: int = 0  # send half the body, then go silent until the client gives up
    ignore_range: int = 0  # answer 200 with the whole body although a Range was asked
    expired: int = 0  # answer 403 as for an expired presigned URL
    not_mp4: set[str] = field(default_factory=set)  # activity ids served as an HTML page
    garbage: set[str] = field(default_factory=set)  # activity ids served as a broken "MP4"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        out = asdict(self)
        out["not_mp4"] = sorted(self.not_mp4)
        out["garbage"] = sorted(self.garbage)
        return out


def render_video(
    label: str,
    start_ms: int,
    *,
    seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    fps: int = 10,
) -> bytes:
    """A short MP4 (H.264 + AAC, moov first) of the test card, its clock starting at
    ``start_ms`` (blocking: run it in a thread)."""
    fd, name = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        # A real file, not BytesIO: faststart re-reads the output to move the moov up front.
        with av.open(name, "w", format="mp4", options={"movflags": "+faststart"}) as out:
            video: Any = out.add_stream("libx264", rate=fps)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.options = {"preset": "ultrafast", "g": str(fps), "bf": "0"}
            audio: Any = out.add_stream("aac", rate=_AUDIO_RATE)
            audio.layout = "mono"
            frames = max(1, round(seconds * fps))
            for n in range(frames):
                picture = render_frame(width, height, n, start_ms + n * 1000 // fps, label)
                frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
                frame.pts = n
                frame.time_base = fractions.Fraction(1, fps)
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            _mux_tone(out, audio, frames / fps)
        with open(name, "rb") as f:
            return f.read()
    finally:
        os.unlink(name)


def _mux_tone(out: Any, audio: Any, seconds: float) -> None:
    """A quiet 440 Hz tone, so the clip has the audio track a doorbell's clips have."""
    total = int(seconds * _AUDIO_RATE)
    step = 1024  # the AAC frame size
    for first in range(0, total, step):
        n = min(step, total - first)
        t = (np.arange(first, first + n) / _AUDIO_RATE).astype(np.float32)
        samples = (0.1 * np.sin(2 * math.pi * 440 * t)).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = _AUDIO_RATE
        frame.pts = first
        out.mux(audio.encode(frame))
    out.mux(audio.encode(None))


class SimVideos:
    """Serves each ``SimCloud`` activity's video, with fault switches and a request log."""

    def __init__(self, cloud: SimCloud, *, seconds: float = 2.0) -> None:
        self.cloud = cloud
        self.seconds = seconds
        self.faults = VideoFaults()
        self.requests: list[tuple[str, str | None]] = []  # (activity id, Range header)
        self._cache: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._rendering: dict[str, asyncio.Future[bytes]] = {}

    def setup(self, app: web.Application) -> None:
        """Add the video route and ``GET/POST /_sim/video_faults``."""
        app.router.add_get("/_sim/videos/{activity_id}.mp4", self._serve)
        app.router.add_get("/_sim/video_faults", self._get_faults)
        app.router.add_post("/_sim/video_faults", self._set_faults)

    async def video(self, activity: dict[str, Any]) -> bytes:
        """The MP4 of one activity (made once, then cached)."""
        key = str(activity["activity_id"])
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        pending = self._rendering.get(key)
        if pending is None:
            label = f"{activity.get('device_name', '')} {activity.get('event_type', '')}".upper()
            job = asyncio.to_thread(
                render_video, label.strip(), int(activity["event_time"]), seconds=self.seconds
            )
            pending = self._rendering[key] = asyncio.ensure_future(job)
            pending.add_done_callback(lambda done: self._rendered(key, done))
        # Shielded: a client that hangs up must not waste the render for the next one.
        return await asyncio.shield(pending)

    def _rendered(self, key: str, done: asyncio.Future[bytes]) -> None:
        self._rendering.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self._cache[key] = done.result()
            while len(self._cache) > _CACHED:
                self._cache.popitem(last=False)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["activity_id"]
        self.requests.append((wanted, request.headers.get("Range")))
        try:
            expires = int(request.query.get("Expires", "0"))
        except ValueError:
            expires = 0
        faults = self.faults
        if faults.expired > 0:
            faults.expired -= 1
            expires = 0
        if not request.query.get("Signature") or expires < self.cloud.clock():
            return _s3_error(403, "AccessDenied", "Request has expired")
        activity = next((a for a in self.cloud.activities if a["activity_id"] == wanted), None)
        if activity is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        if faults.server_errors > 0:
            faults.server_errors -= 1
            return _s3_error(503, "SlowDown", "Please reduce your request rate.")
        if wanted in faults.not_mp4:
            return web.Response(
                text="<html><body>Access portal: please log in</body></html>",
                content_type="text/html",
            )
        if wanted in faults.garbage:
            # An MP4 signature, then nothing a demuxer can use.
            body = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 64
        else:
            body = await self.video(activity)
        start, end = 0, len(body) - 1
        match = _RANGE_RE.match(request.headers.get("Range", ""))
        if match and faults.ignore_range > 0:
            faults.ignore_range -= 1
            match = None
        if match:
            start = int(match.group(1))
            end = min(end, int(match.group(2) or end))
            if start >= len(body) or start > end:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
        resp = web.StreamResponse(status=206 if match else 200)
        resp.content_type = "video/mp4"
        resp.content_length = end + 1 - start
        resp.headers["Accept-Ranges"] = "bytes"
        resp.headers["ETag"] = f'"{zlib.crc32(body):08x}"'
        if match:
            resp.headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
        await resp.prepare(request)
        part = body[start : end + 1]
        if faults.cut_bodies > 0 or faults.stalls > 0:
            stall = faults.cut_bodies == 0
            if stall:
                faults.stalls -= 1
            else:
                faults.cut_bodies -= 1
            await resp.write(part[: len(part) // 2])
            # Give the client time to read the half it got, as it would over a real network.
            await _until_client_leaves(request, 60.0 if stall else 0.2)
            # Content-Length promised more: the client sees the body end early.
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write(part)
        await resp.write_eof()
        return resp

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.as_dict())

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict):
            return web.json_response({"error": "expected an object"}, status=400)
        for key, value in body.items():
            if not hasattr(self.faults, key):
                return web.json_response({"error": f"unknown fault {key!r}"}, status=400)
            setattr(self.faults, key, set(value) if key in ("not_mp4", "garbage") else value)
        return web.json_response(self.faults.as_dict())


async def _until_client_leaves(request: web.Request, limit: float) -> None:
    """Send nothing until the client's read timeout makes it hang up (aiohttp does not
    cancel a handler when its client leaves, and a long sleep would hold up shutdown)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.05)


def _s3_error(status: int, code: str, message: str) -> web.Response:
    """An error in S3's XML shape, as a presigned download URL answers."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{int(time.time() * 1000):x}</RequestId></Error>"
    )
    return web.Response(status=status, text=xml, content_type="application/xml")
