"""Talking to the visitor: a 1 kHz tone through ``POST /api/talk`` and the CLI, heard by the
simulated doorbell (its ``/heard`` report: dominant frequency, level, onset), and every way a
talk is refused: busy (409), too long (413), not audio (415), offline (503), a doorbell that
takes no audio (501, while live view keeps working)."""

from __future__ import annotations

import asyncio
import io
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from bridge.routes.common import TALK
from bridge.service import Bridge
from bridge.sim.world import SimWorld

from .serve_util import FRONT, BridgeFactory, get_json
from .talk_util import heard, tone_file, wait_heard

pytestmark = pytest.mark.slow

TONE_HZ = 1000.0


async def post_talk(bridge: Bridge, body: bytes, src: str = "front-door") -> tuple[int, Any, float]:
    """POST the body to /api/talk; (status, JSON body, seconds the answer took)."""
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{bridge.http_url}api/talk?src={src}", data=io.BytesIO(body)) as resp,
    ):
        return resp.status, await resp.json(content_type=None), time.monotonic() - started


def heard_the_tone(report: dict[str, Any]) -> bool:
    freq = report["frequency_hz"]
    return freq is not None and abs(freq - TONE_HZ) <= 50


def assert_heard_tone(report: dict[str, Any], seconds: float) -> None:
    assert heard_the_tone(report), report
    # A 0.5 amplitude sine is -9 dBFS; the codec may shave a little, never much.
    assert -15.0 <= report["level_dbfs"] <= -6.0, report
    assert report["sound_seconds"] >= seconds - 0.1, report
    assert report["packets"] >= int(seconds / 0.02) - 2, report
    assert report["bytes"] > 0, report
    assert report["decode_errors"] == 0, report


@pytest.mark.parametrize(
    ("container", "codec", "rate", "layout"),
    [("wav", "pcm_s16le", 44_100, "mono"), ("ogg", "libopus", 48_000, "stereo")],
)
async def test_api_talk_plays_a_tone_the_doorbell_hears(
    make_bridge: BridgeFactory,
    world: SimWorld,
    container: str,
    codec: str,
    rate: int,
    layout: str,
) -> None:
    bridge = await make_bridge()
    body = tone_file(TONE_HZ, 1.5, rate=rate, container=container, codec=codec, layout=layout)
    asked = time.time()
    status, answer, took = await post_talk(bridge, body)
    assert status == 200, answer
    assert answer["stream"] == "front-door"
    assert answer["codec"] == "audio/opus"
    assert 1.4 <= answer["played_seconds"] <= 1.6
    # Answered once played: paced in real time, after waking the sleeping doorbell.
    assert 1.4 <= took <= 1.5 + 10, took
    report = await heard(world.base_url, FRONT)
    assert_heard_tone(report, 1.4)
    assert report["codec"] == "opus"
    # The tone started within the time it took to wake the doorbell, well before the answer.
    assert asked < report["onset_at"] < asked + took - 1.3


async def test_a_g711_doorbell_hears_the_tone_in_pcmu(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    world.doorbell(FRONT).configure(audio_codec="pcmu")
    bridge = await make_bridge()
    status, answer, _ = await post_talk(bridge, tone_file(TONE_HZ, 1.0, rate=16_000))
    assert status == 200, answer
    assert answer["codec"] == "audio/PCMU"
    report = await heard(world.base_url, FRONT)
    assert report["codec"] == "pcmu"
    assert_heard_tone(report, 0.9)


async def run_cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_talk_plays_a_file_and_stdin(
    make_bridge: BridgeFactory, world: SimWorld, tmp_path: Path
) -> None:
    bridge = await make_bridge()
    path = tmp_path / "msg.wav"
    path.write_bytes(tone_file(TONE_HZ, 1.0))
    code, out, err = await run_cli(
        "talk", "front-door", "--file", str(path), "--url", bridge.http_url
    )
    assert code == 0, err
    assert out.strip() == "played 1.0 s to front-door (audio/opus)"
    assert_heard_tone(await heard(world.base_url, FRONT), 0.9)

    before = (await heard(world.base_url, FRONT))["packets"]
    code, out, err = await run_cli(
        "talk", FRONT, "--file", "-", "--url", bridge.http_url, stdin=tone_file(TONE_HZ, 0.6)
    )
    assert code == 0, err
    assert out.startswith("played 0.6 s to front-door")
    assert (await heard(world.base_url, FRONT))["packets"] >= before + 28


async def test_cli_talk_errors_are_one_line(make_bridge: BridgeFactory, tmp_path: Path) -> None:
    bridge = await make_bridge()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    code, _, err = await run_cli(
        "talk", "front-door", "--file", str(junk), "--url", bridge.http_url
    )
    assert code == 1, err
    assert "HTTP 415" in err, err
    assert "Traceback" not in err, err
    code, _, err = await run_cli("talk", "garage", "--file", str(junk), "--url", bridge.http_url)
    assert code == 2, err
    assert "unknown device 'garage'" in err, err
    assert "front-door" in err, err
    code, _, err = await run_cli("talk", "front-door", "--file", str(tmp_path / "nope.wav"))
    assert code == 1, err
    assert "cannot read" in err, err


async def test_a_second_talker_gets_409_until_the_first_is_done(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge()
    first = asyncio.create_task(post_talk(bridge, tone_file(TONE_HZ, 2.5)))
    await wait_heard(world.base_url, FRONT, lambda r: r["packets"] > 0)
    status, answer, took = await post_talk(bridge, tone_file(500.0, 0.5))
    assert status == 409, answer
    assert "already talking" in answer["error"]
    assert took < 1.0
    status, answer, _ = await first
    assert status == 200, answer
    # Free again once the first talker is done.
    status, answer, _ = await post_talk(bridge, tone_file(TONE_HZ, 0.3))
    assert status == 200, answer


async def test_too_long_is_413_before_anything_is_played(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge(SKYBELL_BRIDGE_TALK_MAX_SECONDS="1")
    status, answer, _ = await post_talk(bridge, tone_file(TONE_HZ, 2.0))
    assert status == 413, answer
    assert "longer than talk.max_seconds = 1 s" in answer["error"]
    # A body over the byte limit is refused from its Content-Length, unread.
    status, answer, _ = await post_talk(bridge, b"\0" * (3 << 20))
    assert status == 413, answer
    assert "over" in answer["error"]
    assert answer["limit"] < 3 << 20
    assert (await heard(world.base_url, FRONT))["packets"] == 0
    _, streams = await get_json(f"{bridge.http_url}api/streams?src=front-door")
    assert streams["state"] == "idle"  # nothing woke the doorbell


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "empty"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt junk junk junk", "FFmpeg"),
        (b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", "FFmpeg"),
    ],
)
async def test_not_audio_is_415_naming_the_problem(
    make_bridge: BridgeFactory, body: bytes, problem: str
) -> None:
    bridge = await make_bridge()
    status, answer, _ = await post_talk(bridge, body)
    assert status == 415, answer
    assert problem in answer["error"], answer
    assert "\n" not in answer["error"]


async def test_a_picture_is_415_no_audio(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{bridge.http_url}api/frame.jpeg?src=front-door") as resp,
    ):
        jpeg = await resp.read()
    status, answer, _ = await post_talk(bridge, jpeg)
    assert status == 415, answer


async def test_unknown_or_missing_stream(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, answer, _ = await post_talk(bridge, tone_file(), src="garage")
    assert status == 404
    assert "front-door" in answer["streams"]
    status, answer, _ = await post_talk(bridge, tone_file(), src="")
    assert status == 400, answer


async def test_offline_doorbell_is_503_with_the_reason(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    world.cloud.faults.unreachable.add(FRONT)
    bridge = await make_bridge()
    status, answer, took = await post_talk(bridge, tone_file(TONE_HZ, 0.5))
    assert status == 503, answer
    assert "front-door" in answer["error"], answer
    assert "599" in answer["error"], answer
    assert took < 10


async def test_a_doorbell_without_talk_is_501_and_live_view_goes_on(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{world.base_url}/_sim/doorbells/{FRONT}/media"
        async with http.post(url, json={"talk": False}) as resp:
            assert resp.status == 200
    bridge = await make_bridge()
    status, answer, _ = await post_talk(bridge, tone_file(TONE_HZ, 0.5))
    assert status == 501, answer
    assert "takes no audio" in answer["error"], answer
    assert "sendonly" in answer["error"], answer
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{bridge.http_url}api/frame.jpeg?src=front-door") as resp,
    ):
        assert resp.status == 200
        assert (await resp.read())[:3] == b"\xff\xd8\xff"
    _, streams = await get_json(f"{bridge.http_url}api/streams?src=front-door")
    assert streams["state"] == "live"
    assert streams["codecs"]["audio"] == "opus"
    assert (await heard(world.base_url, FRONT))["packets"] == 0


async def test_hanging_up_stops_the_talk_and_frees_the_doorbell(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge()
    url = f"{bridge.http_url}api/talk?src=front-door"
    body = io.BytesIO(tone_file(TONE_HZ, 6.0))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
        talk = asyncio.create_task(http.post(url, data=body))
        await wait_heard(world.base_url, FRONT, lambda r: r["sound_seconds"] >= 0.5)
        talk.cancel()  # the client goes away mid-message
        with pytest.raises(asyncio.CancelledError):
            await talk
    # The doorbell is free again long before the 6 s message would have ended.
    started = time.monotonic()
    status, answer = 409, None
    while status == 409 and time.monotonic() - started < 3:
        status, answer, _ = await post_talk(bridge, tone_file(TONE_HZ, 0.2))
    assert status == 200, answer
    assert (await heard(world.base_url, FRONT))["sound_seconds"] < 4.0


async def test_the_talk_track_sends_nothing_until_someone_talks(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge()
    async with aiohttp.ClientSession() as http:
        warm = f"{bridge.http_url}api/streams/warm?src=front-door&seconds=30"
        async with http.post(warm) as resp:
            assert resp.status == 200
    started = time.monotonic()
    state = ""
    while state != "live" and time.monotonic() - started < 10:
        _, streams = await get_json(f"{bridge.http_url}api/streams?src=front-door")
        state = streams["state"]
        await asyncio.sleep(0.1)
    assert state == "live"
    await asyncio.sleep(1.0)
    # Negotiated sendrecv, yet not one packet (silence is not sent, nor encoded).
    assert (await heard(world.base_url, FRONT))["packets"] == 0
    status, answer, took = await post_talk(bridge, tone_file(TONE_HZ, 0.5))
    assert status == 200, answer
    assert took < 1.5  # warm: no wake-up to wait for
    assert_heard_tone(await heard(world.base_url, FRONT), 0.4)


async def test_a_doorbell_without_audio_is_501(make_bridge: BridgeFactory, world: SimWorld) -> None:
    world.doorbell(FRONT).configure(audio_codec=None)
    bridge = await make_bridge()
    status, answer, _ = await post_talk(bridge, tone_file(TONE_HZ, 0.3))
    assert status == 501, answer
    assert "answered audio inactive" in answer["error"]


def tone_frames(rate: int, layout: str, fmt: str, seconds: float) -> list[av.AudioFrame]:
    """A 1 kHz tone as 20 ms frames in the given shape (what a live source would write)."""
    channels = 2 if layout == "stereo" else 1
    n = int(rate * 0.02)
    frames = []
    for i in range(int(seconds / 0.02)):
        t = (np.arange(n) + i * n) / rate
        wave = (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
        if fmt == "s16":
            data = np.repeat((wave * 32767).astype(np.int16), channels).reshape(1, -1)
        else:  # planar float
            data = np.tile(wave, (channels, 1))
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
        frame.sample_rate = rate
        frames.append(frame)
    return frames


async def test_a_live_source_may_change_its_audio_shape_mid_talk(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    # What the page and the RTSP backchannel do: write() frames as they come, then close().
    bridge = await make_bridge()
    service = bridge.app[TALK]
    async with await service.open("front-door", "test") as session:
        assert service.talker("front-door") == "test"
        for frame in tone_frames(44_100, "mono", "s16", 0.6):
            await session.write(frame)
        for frame in tone_frames(48_000, "stereo", "fltp", 0.6):  # a new microphone
            await session.write(frame)
        await session.drain()  # written faster than real time: let the queue play out
    assert service.talker("front-door") is None
    report = await wait_heard(world.base_url, FRONT, lambda r: r["sound_seconds"] >= 1.1)
    assert_heard_tone(report, 1.1)
