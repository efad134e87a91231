"""``serve`` end to end: the simulator, the hub, the HTTP API and RTSP, seen by real clients."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from pathlib import Path

import aiohttp
import av
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from bridge.sim.picture import read_stamp
from bridge.sim.world import SimWorld

from .fake_doorbell import probe, run
from .serve_util import FRONT, BridgeFactory, basic, get_json


async def test_streams_lists_every_doorbell_by_name_and_id(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await get_json(bridge.http_url + "api/streams")
    assert status == 200
    assert set(body) == {"front-door", "back-garden"}
    front = body["front-door"]
    assert front["id"] == FRONT
    assert front["device"] == "Front Door"
    assert front["state"] == "idle"
    assert front["viewers"] == {}
    assert front["producers"][0]["url"] == f"skybell:{FRONT}"

    status, one = await get_json(bridge.http_url + f"api/streams?src={FRONT}")
    assert status == 200
    assert one["name"] == "front-door"


async def test_unknown_stream_is_404_with_a_clear_message(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await get_json(bridge.http_url + "api/streams?src=side-gate")
    assert status == 404
    assert body["error"] == "unknown stream 'side-gate'"
    assert body["streams"] == ["back-garden", "front-door"]
    code, _, err = await run("ffprobe", "-v", "error", bridge.rtsp_url + "side-gate")
    assert code != 0
    assert "404" in err


@pytest.mark.slow
async def test_ffprobe_over_rtsp_shows_h264_and_aac(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    for name in ("front-door", FRONT):  # the device id works as a stream name too
        info = await probe(bridge.rtsp_url + name, "-rtsp_transport", "tcp")
        codecs = {s["codec_type"]: s for s in info["streams"]}
        assert codecs["video"]["codec_name"] == "h264"
        assert (codecs["video"]["width"], codecs["video"]["height"]) == (854, 480)
        assert codecs["audio"]["codec_name"] == "aac"
    _, body = await get_json(bridge.http_url + "api/streams?src=front-door")
    assert body["codecs"]["video"] == "h264"


@pytest.mark.slow
async def test_auth_is_required_over_http_and_rtsp(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(
        SKYBELL_BRIDGE_SERVER_USERNAME="admin", SKYBELL_BRIDGE_SERVER_PASSWORD="door-s3cret"
    )
    status, body = await get_json(bridge.http_url + "api/streams")
    assert status == 401
    assert body["error"] == "authentication required"
    status, _ = await get_json(bridge.http_url + "api/streams", headers=basic("admin", "wrong"))
    assert status == 401
    status, body = await get_json(
        bridge.http_url + "api/streams", headers=basic("admin", "door-s3cret")
    )
    assert status == 200
    assert "front-door" in body
    status, _ = await get_json(bridge.http_url + "api/health")
    assert status == 200  # liveness probes need no password

    code, _, err = await run("ffprobe", "-v", "error", bridge.rtsp_url + "front-door")
    assert code != 0
    assert "401" in err
    authed = bridge.rtsp_url.replace("rtsp://", "rtsp://admin:door-s3cret@")
    info = await probe(authed + "front-door", "-rtsp_transport", "tcp")
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}


@pytest.mark.slow
async def test_serve_command_runs_against_the_simulator_with_no_config(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYBELL_BRIDGE_")}
    env |= {"SKYBELL_BRIDGE_SERVER_PORT": "0", "SKYBELL_BRIDGE_SERVER_RTSP_PORT": "0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(3)]
        assert "2 doorbell(s): front-door, back-garden" in lines[0]
        http_url = lines[1].split()[-1]
        rtsp_url = lines[2].split()[-1].removesuffix("NAME")
        status, body = await get_json(http_url + "api/streams")
        assert status == 200
        assert set(body) == {"front-door", "back-garden"}
        info = await probe(rtsp_url + "front-door")
        assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}
    finally:
        # SIGTERM, as docker stop and systemd send it: an orderly stop, not a kill.
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        out = (await proc.stdout.read()).decode()
        err = (await proc.stderr.read()).decode()
    assert "built-in simulator" in err
    assert "Traceback" not in err
    assert "skybell-bridge: stopping" in out
    assert code == 0


@pytest.mark.slow
async def test_warm_starts_a_stream_without_viewers(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    async with aiohttp.ClientSession() as http:
        url = bridge.http_url + "api/streams/warm?src=front-door"
        for junk in ("0", "abc", "99999"):
            async with http.post(url + f"&seconds={junk}") as resp:
                assert resp.status == 400
        async with http.post(url + "&seconds=5") as resp:
            assert resp.status == 200
        for _ in range(100):
            _, body = await get_json(bridge.http_url + "api/streams?src=front-door")
            # Live on the first video frame; the first audio frame may trail it on a busy box.
            if body["state"] == "live" and len(body["codecs"]) == 2:
                break
            await asyncio.sleep(0.1)
        assert body["state"] == "live"
        assert body["codecs"] == {"video": "h264", "audio": "opus"}


@pytest.mark.slow
async def test_hls_plays_from_the_simulated_doorbell(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    info = await probe(bridge.http_url + "api/stream.m3u8?src=front-door")
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (854, 480)
    assert streams["audio"]["codec_name"] == "aac"


@pytest.mark.slow
async def test_snapshot_and_mjpeg_from_the_simulated_doorbell(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    async with aiohttp.ClientSession() as http:
        async with http.get(bridge.http_url + "api/frame.jpeg?src=front-door") as resp:
            assert resp.status == 200
            assert resp.headers["X-Snapshot-Source"] == "live"
            jpeg = await resp.read()
        with av.open(io.BytesIO(jpeg), format="mjpeg") as container:
            frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (854, 480)
        read_stamp(frame.to_ndarray(format="gray"))  # raises unless a doorbell picture
    code, _, err = await run(
        "ffmpeg", "-v", "error", "-f", "mpjpeg", "-i",
        bridge.http_url + "api/stream.mjpeg?src=front-door&width=320",
        "-frames:v", "5", "-f", "null", "-",
    )  # fmt: skip
    assert code == 0, err


@pytest.mark.slow
async def test_a_browser_peer_gets_h264_over_webrtc(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                bridge.http_url + "api/webrtc?src=front-door",
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp:
                assert resp.status == 201
                answer = await resp.text()
                location = resp.headers["Location"]
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            frames = [await asyncio.wait_for(video.receiver.track.recv(), 20) for _ in range(5)]
            assert all(isinstance(f, av.VideoFrame) for f in frames)
            assert {(f.width, f.height) for f in frames} == {(854, 480)}  # type: ignore[union-attr]
            _, body = await get_json(bridge.http_url + "api/streams?src=front-door")
            assert body["viewers"] == {"webrtc": 1}
            async with http.delete(bridge.http_url + location.lstrip("/")) as resp:
                assert resp.status == 200
            _, body = await get_json(bridge.http_url + "api/streams?src=front-door")
            assert body["viewers"] == {}
    finally:
        await pc.close()


@pytest.mark.slow
async def test_a_late_rtsp_reader_gets_pictures_by_asking_for_a_keyframe(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    # keyframe_interval 1: a cached GOP older than 1 s is stale, so the late reader must ask.
    # No pre-roll is recorded, so nothing else makes the hub ask for keyframes.
    bridge = await make_bridge(
        SKYBELL_BRIDGE_STREAMS_KEYFRAME_INTERVAL="1", SKYBELL_BRIDGE_RECORD_PREROLL="0"
    )
    url = bridge.rtsp_url + "front-door"
    first = asyncio.create_task(
        run("ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", url, "-t", "9", "-f", "null",
            "-", timeout=40)
    )  # fmt: skip
    for _ in range(200):
        _, body = await get_json(bridge.http_url + "api/streams?src=front-door")
        if body["state"] == "live":
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(3.0)  # the session's first keyframe is long stale
    code, _, err = await run(
        "ffmpeg", "-v", "error", "-rtsp_transport", "udp", "-i", url, "-frames:v", "5",
        "-f", "null", "-", timeout=20,
    )  # fmt: skip
    assert code == 0, err
    _, body = await get_json(bridge.http_url + "api/streams?src=front-door")
    assert body["keyframes"] in ("ok", "waiting")
    media = world.doorbell(FRONT).media_stats()
    if world.doorbell(FRONT).media.keyframes == "on_request":
        # Nothing but the bridge's request could have made the picture the late reader got.
        assert body["keyframe_requests"]["pli"] == 1
        assert body["keyframe_requests"]["answered"] >= 1
        assert media["stats"]["pli_received"] >= 1
        assert media["stats"]["keyframes_sent"] >= 2
    assert (await first)[0] == 0
