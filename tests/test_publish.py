"""Publishing to real media servers: ffmpeg as an RTSP (ANNOUNCE/RECORD) and SRT server, nginx-rtmp.

Each receiver is a real program on a free loopback port; what it got is read back with PyAV
(ffmpeg's own demuxers) and compared with what the doorbell sent: the same SPS (video copied,
not re-encoded), AAC audio, the frame count, and one continuous timeline across a doorbell
reconnect (the simulator's ``drop`` fault).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import av
import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError
from bridge.media.packet import extract_sps_pps
from bridge.service import Bridge
from bridge.sim.world import SimWorld

from .mqtt_util import make_tls
from .serve_util import BridgeFactory, get_json

NAME = "front-door"
FFMPEG = shutil.which("ffmpeg")
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")
needs_nginx = pytest.mark.skipif(
    NGINX is None or not RTMP_MODULE.exists(), reason="nginx with libnginx-mod-rtmp is missing"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int, udp: bool) -> bool:
    # Read the kernel's table instead of connecting: ffmpeg's RTSP listener takes exactly one
    # connection, and a probe would be it. A UDP socket (SRT) is ready once it is bound.
    needle = f":{port:04X}"
    table = Path("/proc/net/udp" if udp else "/proc/net/tcp").read_text()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(needle) and (udp or fields[3] == "0A"):
            return True
    return False


async def _wait_listening(url: str, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    port = int(url.split(":")[2].split("/")[0].split("?")[0])
    for _ in range(int(timeout * 20)):
        if _listening(port, udp=url.startswith("srt:")):
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


def read_back(url_or_path: str, *, frames: int | None = None) -> dict[str, Any]:
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
            if frames is not None and len(found["video_dts"]) >= frames:
                break
    return found


def _continuous(times: list[float], *, gap: float) -> None:
    assert times, "nothing received"
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert min(steps) > 0, "timestamps went backwards or repeated"
    assert max(steps) < gap, f"a hole of {max(steps):.1f} s in the timeline"


@contextlib.contextmanager
def _ffmpeg_receiving(
    tmp_path: Path, url: str, listen: list[str]
) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    """ffmpeg as a media server: it takes one push on ``listen`` and copies it to an MP4."""
    out = tmp_path / "received.mp4"
    assert FFMPEG is not None
    with (tmp_path / "ffmpeg.log").open("wb") as log:
        proc = subprocess.Popen(
            [FFMPEG, "-nostdin", "-loglevel", "error", *listen, "-c", "copy", "-y", str(out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            yield url, out, [proc]
        finally:
            _stop(proc)


@pytest.fixture
def rtsp_receiver(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    url = f"rtsp://127.0.0.1:{free_port()}/x"
    with _ffmpeg_receiving(tmp_path, url, ["-rtsp_flags", "listen", "-i", url]) as receiver:
        yield receiver


@pytest.fixture
def srt_receiver(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    with socket.socket(type=socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"srt://127.0.0.1:{port}"
    with _ffmpeg_receiving(tmp_path, url, ["-i", url + "?mode=listener"]) as receiver:
        yield receiver


@contextlib.asynccontextmanager
async def _tls_front(folder: Path, url: str) -> AsyncIterator[str]:
    """``url`` reached over TLS: rtsps:// or rtmps:// to a terminator in front of the plain
    receiver, as stunnel or a load balancer stands before a media server. The bridge's TLS (PyAV's
    FFmpeg) is the real thing; the receiver behind stays the real ffmpeg or nginx-rtmp."""
    _, cert, key = make_tls(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    parts = urlsplit(url)
    assert parts.port is not None

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        behind_reader, behind_writer = await asyncio.open_connection("127.0.0.1", parts.port)
        await asyncio.gather(pipe(reader, behind_writer), pipe(behind_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield parts._replace(scheme=parts.scheme + "s", netloc=f"127.0.0.1:{port}").geturl()


async def _api(bridge: Bridge, method: str, path: str, **params: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, bridge.http_url + path.lstrip("/"), params=params) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


async def _api_text(bridge: Bridge, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(bridge.http_url + path.lstrip("/")) as r:
        return r.status, await r.text()


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
@pytest.mark.parametrize(
    ("receiver", "tls"),
    [("rtsp_receiver", False), ("rtsp_receiver", True), ("srt_receiver", False)],
    ids=["rtsp", "rtsps", "srt"],
)
async def test_push_to_ffmpeg_copies_video_and_survives_a_reconnect(
    make_bridge: BridgeFactory,
    world: SimWorld,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    receiver: str,
    tls: bool,
) -> None:
    # RTSP ANNOUNCE/RECORD over TCP (or TLS), and MPEG-TS over SRT (ffmpeg as an SRT listener).
    url, out, (proc,) = request.getfixturevalue(receiver)
    await _wait_listening(url, proc)
    async with contextlib.AsyncExitStack() as stack:
        if tls:
            url = await stack.enter_async_context(_tls_front(tmp_path, url))
        await _push_and_read_back(make_bridge, world, url, out, proc)


async def _push_and_read_back(
    make_bridge: BridgeFactory,
    world: SimWorld,
    url: str,
    out: Path,
    proc: subprocess.Popen[bytes],
) -> None:
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
    status, final = await _api(bridge, "DELETE", "/api/streams", src=NAME, dst=url)
    assert status == 200  # the push ends in order (RTSP TEARDOWN, SRT shutdown): ffmpeg finishes
    sent = final["frames"]  # counted up to the end of the push
    await asyncio.to_thread(proc.wait, 15)
    got = await asyncio.to_thread(read_back, str(out))
    assert got["video_codec"] == "h264"
    assert got["sps"] == stream.sps  # copied, never re-encoded
    assert got["audio_codec"] == "aac"
    assert sent * 0.9 <= len(got["video_dts"]) <= sent
    _continuous(got["video_dts"], gap=5.0)
    _continuous(got["audio_dts"], gap=5.0)


def test_unsupported_scheme_is_a_config_error_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[[publish]]\nstream = "front-door"\nurl = "http://media.example/x"\n')
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config), "devices"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "publish[0].url" in result.stderr
    assert "rtsp, rtsps, rtmp, rtmps, srt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_srt_without_the_ffmpeg_program_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[[publish]]\nstream = "front-door"\nurl = "srt://media.example:8890"\n')
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg to be found
    with pytest.raises(ConfigError, match=r"publish\[0\]\.url.*ffmpeg program"):
        load_settings(config, {})


async def test_every_stream_pushes_each_doorbell_of_this_bridge_to_its_own_path(
    make_bridge: BridgeFactory,
) -> None:
    config = '[[publish]]\nstream = "*"\nurl = "rtsp://127.0.0.1:9/cams/{stream}"\n'
    bridge = await make_bridge(config)
    _, streams = await get_json(bridge.http_url + "api/streams")
    assert {name: [p["url"] for p in s["publish"]] for name, s in streams.items()} == {
        "front-door": ["rtsp://127.0.0.1:9/cams/front-door"],
        "back-garden": ["rtsp://127.0.0.1:9/cams/back-garden"],
    }
    # A bridge with a share of the account pushes its share only.
    share = await make_bridge(config, SKYBELL_BRIDGE_SKYBELL_DEVICES="back-garden")
    _, streams = await get_json(share.http_url + "api/streams")
    assert [p["url"] for p in streams["back-garden"]["publish"]] == [
        "rtsp://127.0.0.1:9/cams/back-garden"
    ]
    assert list(streams) == ["back-garden"]


def test_every_stream_needs_its_name_in_the_url(tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[[publish]]\nstream = "*"\nurl = "rtmp://media.example/live/door"\n')
    with pytest.raises(ConfigError, match=r"publish\[0\]\.url.*\{stream\}"):
        load_settings(config, {})


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('stream = "front-door"\nurl = "rtsp://h/x"\nmode = "sometimes"', "publish[0].mode"),
        ('stream = "front-door"\nurl = "rtmp://h/x"\naudio = "opus"', "publish[0].audio"),
        ('url = "rtmp://h/x"', "publish[0].stream"),
        ('stream = "front-door"\nurl = "rtmp://h/x"\nlatency = 1', "publish[0].latency"),
    ],
)
def test_bad_publish_tables_name_the_key(tmp_path: Path, table: str, key: str) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text(f"[[publish]]\n{table}\n")
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(config, {})


async def test_unknown_stream_is_a_config_error_at_start(make_bridge: BridgeFactory) -> None:
    with pytest.raises(ConfigError, match=r"publish\[0\]\.stream.*garage"):
        await make_bridge('[[publish]]\nstream = "garage"\nurl = "rtsp://127.0.0.1:9/x"\n')


async def test_ad_hoc_publish_checks_its_input(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await _api(bridge, "POST", "/api/streams", src=NAME, dst="http://h/x")
    assert status == 400
    assert "scheme must be one of" in body["error"]
    status, body = await _api(bridge, "POST", "/api/streams", src="garage", dst="rtsp://h/x")
    assert status == 404
    assert "unknown stream 'garage'" in body["error"]
    status, body = await _api(bridge, "POST", "/api/streams", src=NAME, dst="rtsp://h/x", mode="x")
    assert status == 400
    status, body = await _api(bridge, "DELETE", "/api/streams", src=NAME, dst="rtsp://h/x")
    assert status == 404


def _read_rtsp_frames(url: str, frames: int, timeout: float = 20) -> int:
    got = 0
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=timeout) as container:
        for packet in container.demux(video=0):
            if packet.size:
                got += 1
                if got >= frames:
                    break
    return got


_SECRET = "hunter2-publish-secret"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dst", "shown"),
    [
        (f"rtsp://admin:{_SECRET}@127.0.0.1:{{port}}/x", "rtsp://***:***@127.0.0.1:{port}/x"),
        # SRT's secret is a query parameter; the push goes through the ffmpeg program.
        pytest.param(
            f"srt://127.0.0.1:{{port}}?passphrase={_SECRET}&streamid=x",
            "srt://127.0.0.1:{port}?passphrase=***&streamid=x",
            marks=needs_ffmpeg,
        ),
    ],
)
async def test_unreachable_target_logs_once_backs_off_and_leaves_outputs_alone(
    make_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture, dst: str, shown: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge.publish")
    port = free_port()  # nothing listens there
    secret = _SECRET
    dst = dst.format(port=port)
    bridge = await make_bridge()
    status, body = await _api(bridge, "POST", "/api/streams", src=NAME, dst=dst)
    assert status == 200, body
    assert secret not in json.dumps(body)
    # The doorbell stays live for the push; an RTSP reader of the bridge gets its frames.
    got = await asyncio.to_thread(_read_rtsp_frames, bridge.rtsp_url + NAME, 30)
    assert got == 30
    entry: dict[str, Any] = {}
    for _ in range(300):
        entry = await _publish_entry(bridge)
        if entry["reconnects"] >= 2:  # retried, with backoff
            break
        await asyncio.sleep(0.1)
    assert entry["reconnects"] >= 2, entry
    assert entry["state"] in ("unavailable", "connecting"), entry
    assert entry["url"] == shown.format(port=port)
    assert entry["error"]
    assert secret not in entry["error"]
    status, metrics = await _api_text(bridge, "/metrics")
    assert status == 200
    assert "skybell_bridge_publish_reconnects_total" in metrics
    assert secret not in metrics
    warnings = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and "unavailable" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert secret not in caplog.text
    status, body = await _api(bridge, "DELETE", "/api/streams", src=NAME, dst=dst)
    assert status == 200
    status, streams = await get_json(bridge.http_url + f"api/streams?src={NAME}")
    assert streams["publish"] == []


_NGINX_CONF = """
load_module {module};
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; {rules} }} }} }}
"""


@contextlib.contextmanager
def _nginx(
    folder: Path, port: int, rules: str = ""
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """nginx-rtmp on ``port``, with ``rules`` (access rules) for its ``live`` application."""
    conf = folder / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(module=RTMP_MODULE, tmp=folder, port=port, rules=rules))
    assert NGINX is not None
    with (folder / "nginx.out").open("wb") as log:
        proc = subprocess.Popen(
            [NGINX, "-e", str(folder / "error.log"), "-p", str(folder), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            yield f"rtmp://127.0.0.1:{port}/live/x", proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def rtmp_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    # A test may ask for access rules through indirect parametrization.
    with _nginx(tmp_path, free_port(), getattr(request, "param", "")) as server:
        yield server


@pytest.mark.slow
@needs_nginx
async def test_a_target_that_comes_back_is_logged_back_once(
    make_bridge: BridgeFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/x"
    bridge = await make_bridge(f'[[publish]]\nstream = "{NAME}"\nurl = "{url}"\nmode = "always"\n')
    for _ in range(300):
        if (await _publish_entry(bridge))["reconnects"] >= 1:
            break
        await asyncio.sleep(0.1)
    with _nginx(tmp_path, port) as (_, proc):
        await _wait_listening(url, proc)
        # Back only once the push has held a while (see publisher._STABLE), then silent.
        for _ in range(600):
            if [r for r in caplog.records if r.getMessage().endswith(": back")]:
                break
            await asyncio.sleep(0.1)
        entry = await _publish_entry(bridge)
        assert entry["state"] == "publishing", entry
        assert entry["error"] is None
        got = await asyncio.to_thread(read_back, url, frames=15)
        assert len(got["video_dts"]) == 15
        # Counted while nginx still runs: stopping it makes the target unavailable again.
        messages = [r.getMessage() for r in caplog.records if r.name.startswith("bridge.publish")]
    assert len([m for m in messages if m.endswith(": back")]) == 1, messages
    assert len([m for m in messages if "unavailable (" in m]) == 1, messages


@pytest.mark.slow
@needs_nginx
@pytest.mark.parametrize("tls", [False, True], ids=["rtmp", "rtmps"])
async def test_rtmp_publish_to_nginx_copies_video_and_survives_a_reconnect(
    make_bridge: BridgeFactory,
    world: SimWorld,
    rtmp_server: tuple[str, subprocess.Popen[bytes]],
    tmp_path: Path,
    tls: bool,
) -> None:
    url, proc = rtmp_server
    await _wait_listening(url, proc)
    async with contextlib.AsyncExitStack() as stack:
        push = await stack.enter_async_context(_tls_front(tmp_path, url)) if tls else url
        await _push_to_nginx(make_bridge, world, push, url)


async def _push_to_nginx(make_bridge: BridgeFactory, world: SimWorld, push: str, url: str) -> None:
    bridge = await make_bridge(f'[[publish]]\nstream = "{NAME}"\nurl = "{push}"\nmode = "always"\n')
    await _wait_frames(bridge, 15)
    # A viewer of the media server reads ~10 s while the doorbell drops its call once.
    reader = asyncio.ensure_future(asyncio.to_thread(read_back, url, frames=150))
    await asyncio.sleep(2)
    await _drop_doorbell(world)
    got = await asyncio.wait_for(reader, 60)
    stream = bridge.hub.get(NAME)
    assert stream is not None
    assert stream.reconnects >= 1
    assert got["video_codec"] == "h264"
    assert got["sps"] == stream.sps  # copied, never re-encoded
    assert got["audio_codec"] == "aac"
    assert len(got["video_dts"]) == 150
    _continuous(got["video_dts"], gap=5.0)
    _continuous(got["audio_dts"], gap=5.0)
    assert (await _publish_entry(bridge))["state"] == "publishing"


@pytest.mark.slow
@needs_nginx
@pytest.mark.parametrize("rtmp_server", ["deny publish all;"], indirect=True)
async def test_a_refused_publish_is_one_warning_and_backoff(
    make_bridge: BridgeFactory,
    rtmp_server: tuple[str, subprocess.Popen[bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # nginx-rtmp accepts the connection and the handshake, then refuses the publish itself, as
    # a media server does for a wrong publish password.
    url, proc = rtmp_server
    await _wait_listening(url, proc)
    bridge = await make_bridge(f'[[publish]]\nstream = "{NAME}"\nurl = "{url}"\nmode = "always"\n')
    entry: dict[str, Any] = {}
    for _ in range(300):
        entry = await _publish_entry(bridge)
        if entry["reconnects"] >= 2:
            break
        await asyncio.sleep(0.1)
    assert entry["reconnects"] >= 2, entry  # retried, with backoff
    # FFmpeg may write a few frames before nginx answers the publish with a reset, so a retry
    # can look open for a moment: the frame count and the state at one instant prove nothing.
    assert entry["error"]
    # The bridge's own viewers are untouched by it.
    assert await asyncio.to_thread(_read_rtsp_frames, bridge.rtsp_url + NAME, 15) == 15
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert not [r for r in caplog.records if r.getMessage().endswith(": back")]


@pytest.mark.slow
@needs_ffmpeg
async def test_while_live_rides_along_and_never_wakes_the_doorbell_itself(
    make_bridge: BridgeFactory,
    rtsp_receiver: tuple[str, Path, list[subprocess.Popen[bytes]]],
) -> None:
    url, _, (proc,) = rtsp_receiver
    await _wait_listening(url, proc)
    bridge = await make_bridge(f'[[publish]]\nstream = "{NAME}"\nurl = "{url}"\n')
    await asyncio.sleep(1.5)
    status, body = await get_json(bridge.http_url + f"api/streams?src={NAME}")
    assert status == 200
    assert body["state"] == "idle"  # the push alone does not start the live call
    assert body["publish"][0]["state"] == "waiting"
    assert body["publish"][0]["mode"] == "while_live"
    # An RTSP viewer makes the stream live: the push rides along while it watches.
    reader = asyncio.ensure_future(asyncio.to_thread(_read_rtsp_frames, bridge.rtsp_url + NAME, 90))
    await _wait_frames(bridge, 15)
    assert await reader == 90
    # The viewer left: the push lets go, and the live call ends after the idle timeout.
    for _ in range(200):
        _, body = await get_json(bridge.http_url + f"api/streams?src={NAME}")
        if body["state"] == "idle" and body["publish"][0]["state"] == "waiting":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the stream stayed up for the push: {body}")


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["rtsp", "rtmp"])
async def test_a_target_that_accepts_and_never_answers_freezes_nothing(
    make_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture, scheme: str
) -> None:
    # The kernel completes the connection (a listen backlog), and nothing ever answers: FFmpeg
    # waits in its open (the RTSP ANNOUNCE, the RTMP handshake), holding the GIL of the muxer
    # process, never the bridge's.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        dst = f"{scheme}://127.0.0.1:{silent.getsockname()[1]}/live/x"
        bridge = await make_bridge()
        status, _ = await _api(bridge, "POST", "/api/streams", src=NAME, dst=dst)
        assert status == 200
        # RTSP viewers keep their pictures all along, through ~13 s of the hung open, and a
        # reader with an NVR's 5 s timeout never trips (a frozen loop would stop every frame).
        got = await asyncio.to_thread(_read_rtsp_frames, bridge.rtsp_url + NAME, 200, 5)
        assert got == 200
        entry: dict[str, Any] = {}
        for _ in range(400):
            entry = await _publish_entry(bridge)
            if entry["reconnects"]:
                break
            await asyncio.sleep(0.1)
        # Given up on within FFmpeg's I/O timeout (or killed a little after), then retried.
        assert entry["reconnects"] >= 1, entry
        assert entry["state"] in ("unavailable", "connecting"), entry
        assert entry["error"]
        # And the loop kept serving while the push hung: an RTSP reader still gets frames.
        assert await asyncio.to_thread(_read_rtsp_frames, bridge.rtsp_url + NAME, 15) == 15
        warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len([r for r in warnings if r.name.startswith("bridge.publish")]) == 1


@contextlib.asynccontextmanager
async def _throttled_rtsp_receiver(rate: int) -> AsyncIterator[str]:
    """A media server that takes an RTSP push (ANNOUNCE/SETUP/RECORD) and then reads it at
    ``rate`` bytes a second: a target on a link slower than the doorbell's bitrate.

    A small receive buffer keeps the kernel from hiding the slowness behind megabytes.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.1", 0))
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                method, *lines = head.strip().split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                reply = f"RTSP/1.0 200 OK\r\nCSeq: {headers['cseq']}\r\nSession: 1\r\n"
                if method.startswith("SETUP"):
                    reply += f"Transport: {headers['transport']}\r\n"
                writer.write((reply + "\r\n").encode())
                if method.startswith("RECORD"):
                    break
            while True:
                if not await reader.read(rate // 10):
                    break
                await asyncio.sleep(0.1)  # a tenth of a second's worth, ten times a second

    server = await asyncio.start_server(serve, sock=sock)
    try:
        yield f"rtsp://127.0.0.1:{sock.getsockname()[1]}/slow"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


@pytest.mark.slow
async def test_a_target_slower_than_the_doorbell_costs_whole_gops_not_memory(
    make_bridge: BridgeFactory,
) -> None:
    async with _throttled_rtsp_receiver(rate=20_000) as dst:  # a quarter of the 480p bitrate
        bridge = await make_bridge()
        status, _ = await _api(bridge, "POST", "/api/streams", src=NAME, dst=dst)
        assert status == 200
        entry: dict[str, Any] = {}
        for _ in range(600):
            entry = await _publish_entry(bridge)
            if entry["dropped"]:
                break
            await asyncio.sleep(0.1)
        assert entry["dropped"] > 0, entry  # the queue is bounded: it dropped rather than grew
        assert entry["state"] == "publishing"  # slow is not failed: the push goes on
        stream = bridge.hub.get(NAME)
        assert stream is not None
        publish = next(s for s in stream.subscribers if s.name == "publish")
        assert publish.queued <= publish.max_packets
        # The other outputs are untouched: an RTSP reader gets its frames meanwhile.
        assert await asyncio.to_thread(_read_rtsp_frames, bridge.rtsp_url + NAME, 45, 5) == 45
        # And it keeps dropping, whole GOPs at a time: the emptied queue refills (with a
        # camera-style doorbell that takes a while) and is dropped again.
        later = entry
        for _ in range(600):
            later = await _publish_entry(bridge)
            if later["dropped"] > entry["dropped"]:
                break
            await asyncio.sleep(0.1)
        assert later["dropped"] > entry["dropped"], later
        assert later["reconnects"] == 0
        assert later["frames"] > 0
