"""Publishing to real media servers: ffmpeg as an RTSP server (ANNOUNCE/RECORD) and nginx-rtmp.

Each receiver is a real program on a free loopback port; what it got is read back with PyAV
(ffmpeg's own demuxers) and compared with what the doorbell sent: the same SPS (video copied,
not re-encoded), AAC audio, the frame count, and one continuous timeline across a doorbell
reconnect (the simulator's ``drop`` fault).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from bridge.media.packet import extract_sps_pps
from bridge.service import Bridge
from bridge.sim.world import SimWorld

from .serve_util import BridgeFactory, get_json

NAME = "front-door"
FFMPEG = shutil.which("ffmpeg")
NGINX = shutil.which("nginx")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
needs_nginx = pytest.mark.skipif(
    NGINX is None or not RTMP_MODULE.exists(), reason="nginx with libnginx-mod-rtmp is missing"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    # Read the kernel's table instead of connecting: ffmpeg's RTSP listener takes exactly one
    # connection, and a probe would be it.
    needle = f":{port:04X} "
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(needle.strip()) and fields[3] == "0A":
            return True
    return False


async def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    for _ in range(int(timeout * 20)):
        if _listening(port):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the receiver exited early with {proc.returncode}")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # ffmpeg finishes its file on SIGINT
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _avcc_sps(extradata: bytes) -> bytes:
    """The first SPS of an avcC record (or of Annex-B extradata)."""
    if extradata[:1] == b"\x01":
        size = int.from_bytes(extradata[6:8], "big")
        return extradata[8 : 8 + size]
    sps, _ = extract_sps_pps(extradata)
    assert sps is not None
    return sps


def read_back(url_or_path: str, *, seconds: float | None = None) -> dict[str, Any]:
    """What a receiver holds: the video's SPS, codecs, and the video and audio timestamps."""
    options = {"rw_timeout": "15000000"} if "://" in url_or_path else {}
    found: dict[str, Any] = {"video_dts": [], "audio_dts": []}
    with av.open(url_or_path, options=options, timeout=15) as container:
        video = container.streams.video[0]
        found["sps"] = _avcc_sps(bytes(video.codec_context.extradata or b""))
        found["video_codec"] = video.codec_context.name
        audio = container.streams.audio[0] if container.streams.audio else None
        found["audio_codec"] = audio.codec_context.name if audio is not None else None
        for packet in container.demux():
            if packet.dts is None or packet.time_base is None:
                continue
            t = float(packet.dts * packet.time_base)
            kind = "video_dts" if packet.stream.type == "video" else "audio_dts"
            found[kind].append(t)
            if seconds is not None and found["video_dts"] and found["video_dts"][-1] >= seconds:
                break
    return found


def _continuous(times: list[float], *, gap: float) -> None:
    assert times, "nothing received"
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert min(steps) > 0, "timestamps went backwards or repeated"
    assert max(steps) < gap, f"a hole of {max(steps):.1f} s in the timeline"


@pytest.fixture
def rtsp_receiver(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    port = free_port()
    out = tmp_path / "received.mp4"
    url = f"rtsp://127.0.0.1:{port}/x"
    assert FFMPEG is not None
    with (tmp_path / "ffmpeg.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                FFMPEG,
                "-nostdin",
                "-loglevel",
                "error",
                "-rtsp_flags",
                "listen",
                "-i",
                url,
                "-c",
                "copy",
                "-y",
                str(out),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            yield url, out, [proc]
        finally:
            _stop(proc)


async def _api(bridge: Bridge, method: str, path: str, **params: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, bridge.http_url + path.lstrip("/"), params=params) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def _publish_entry(bridge: Bridge) -> dict[str, Any]:
    status, body = await get_json(bridge.http_url + f"api/streams?src={NAME}")
    assert status == 200
    assert len(body["publish"]) == 1
    entry: dict[str, Any] = body["publish"][0]
    return entry


async def _wait_frames(bridge: Bridge, frames: int, timeout: float = 60) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for _ in range(int(timeout * 10)):
        entry = await _publish_entry(bridge)
        if entry["frames"] >= frames:
            return entry
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {entry.get('frames')} frames pushed: {entry}")


async def _drop_doorbell(world: SimWorld) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(world.base_url + "/_sim/doorbells/Front Door/fault", json={"fault": "drop"}) as r,
    ):
        assert r.status == 200, await r.text()


@pytest.mark.slow
@needs_ffmpeg
async def test_rtsp_publish_to_ffmpeg_copies_video_and_survives_a_reconnect(
    make_bridge: BridgeFactory,
    world: SimWorld,
    rtsp_receiver: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    url, out, (proc,) = rtsp_receiver
    await _wait_listening(int(url.split(":")[2].split("/")[0]), proc)
    bridge = await make_bridge(
        f'[[publish]]\nstream = "{NAME}"\nurl = "{url}"\nmode = "always"\naudio = "aac"\n'
    )
    first = await _wait_frames(bridge, 30)
    assert first["state"] == "publishing"
    await _drop_doorbell(world)
    await _wait_frames(bridge, first["frames"] + 45)
    stream = bridge.hub.get(NAME)
    assert stream is not None
    assert stream.reconnects >= 1
    assert stream.sps is not None
    sent = (await _publish_entry(bridge))["frames"]
    status, _ = await _api(bridge, "DELETE", "/api/streams", src=NAME, dst=url)
    assert status == 200  # the push ends with a TEARDOWN: ffmpeg finishes its file
    await asyncio.to_thread(proc.wait, 15)
    got = await asyncio.to_thread(read_back, str(out))
    assert got["video_codec"] == "h264"
    assert got["sps"] == stream.sps  # copied, never re-encoded
    assert got["audio_codec"] == "aac"
    assert sent * 0.9 <= len(got["video_dts"]) <= sent
    _continuous(got["video_dts"], gap=5.0)
    _continuous(got["audio_dts"], gap=5.0)
