"""Push-to-talk on the page: Chromium's fake microphone plays a 1 kHz tone to the doorbell.

Chromium runs with a fake capture device that plays a WAV this test writes (a 1 kHz sine), so
holding the talk button sends that tone up the viewer's WebRTC session, through the bridge's
talk service and the live call to the simulated doorbell, whose ``/heard`` report must then show
~1 kHz. A second talker (``POST /api/talk``, another page) meanwhile gets 409 and is told so.
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from playwright.async_api import async_playwright

from bridge.service import Bridge
from bridge.sim.world import SimWorld

from .serve_util import BridgeFactory
from .web_util import ARGS, CHROMIUM, HAVE_CHROMIUM, Watch, shot, until

pytestmark = pytest.mark.slow


def write_tone(path: Path, freq: float = 1000.0, seconds: float = 4.0, rate: int = 48000) -> None:
    """A 16-bit mono WAV of a sine: what Chromium's fake microphone plays, looping."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


@pytest.fixture
async def talk_browser(tmp_path: Path) -> AsyncIterator[Any]:
    """Headless Chromium whose microphone plays a 1 kHz tone, granted without asking."""
    if not HAVE_CHROMIUM:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap --test")
    tone = tmp_path / "tone-1khz.wav"
    await asyncio.to_thread(write_tone, tone)
    args = [
        *ARGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={tone}",
    ]
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield chromium
        await chromium.close()


async def heard(world: SimWorld, device: str = "Front Door") -> dict[str, Any]:
    url = f"{world.base_url}/_sim/doorbells/{device}/heard"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body


async def live_page(browser: Any, bridge: Bridge) -> tuple[Any, Watch]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    watch = Watch(page)
    await page.goto(bridge.http_url + "#/live/front-door")
    await until(lambda: page.text_content("#transport"), 30)
    await page.wait_for_selector("#talk:not([disabled])", timeout=30_000)
    assert await page.text_content("#transport") == "WebRTC"
    return page, watch


async def talk_state(page: Any) -> str:
    return str(await page.get_attribute(".talk-box", "data-state"))


async def test_hold_to_talk_reaches_the_doorbell_and_a_second_talker_gets_409(
    make_bridge: BridgeFactory, world: SimWorld, talk_browser: Any
) -> None:
    bridge = await make_bridge()
    page, watch = await live_page(talk_browser, bridge)
    assert await talk_state(page) == "idle"
    before = await heard(world)

    # Hold the button: the bridge says yes, the microphone goes up, the doorbell hears it.
    await page.locator("#talk").hover()
    pressed = time.time()
    await page.mouse.down()
    await until(lambda: _state_is(page, "talking"), 15)
    assert await page.text_content("#talk-state") == "Talking…"
    report = await until(lambda: _hears_1khz(world), 20)
    assert report["packets"] > before.get("packets", 0)
    if report.get("onset_at"):
        # Press to sound at the doorbell, first press: it includes opening the microphone.
        print(f"\npage talk: doorbell heard sound {report['onset_at'] - pressed:.3f} s after press")
    level = await until(lambda: _level(page), 5)  # the meter moves with the tone
    assert level > 0.3

    # Someone else meanwhile: the API and a second page are both refused, and told why.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{bridge.http_url}api/talk?src=front-door",
            data=_wav_bytes(),
            headers={"Content-Type": "audio/wav"},
        ) as resp,
    ):
        assert resp.status == 409
        assert "already talking" in (await resp.json())["error"]
    other, other_watch = await live_page(talk_browser, bridge)
    await other.keyboard.down("Space")
    await until(lambda: _state_is(other, "busy"), 15)
    assert await other.text_content("#talk-state") == "Someone is already talking"
    await other.keyboard.up("Space")
    await shot(other, "talk-busy")
    await shot(page, "talk-talking")

    # Let go: the doorbell is free, and the second page's space bar now talks.
    await page.mouse.up()
    await until(lambda: _state_is(page, "idle"), 10)
    await other.keyboard.down("Space")
    await until(lambda: _state_is(other, "talking"), 15)
    await other.keyboard.up("Space")
    await until(lambda: _state_is(other, "idle"), 10)
    assert watch.errors == []
    # Chromium logs every 4xx answer to a fetch; the refused talk is the only one expected.
    assert [e for e in other_watch.errors if "409 (Conflict)" not in e] == []


async def _state_is(page: Any, state: str) -> bool:
    return await talk_state(page) == state


async def _level(page: Any) -> float:
    return float(await page.get_attribute(".talk-box", "data-level") or 0)


async def _hears_1khz(world: SimWorld) -> dict[str, Any] | None:
    report = await heard(world)
    frequency = report.get("frequency_hz")
    return report if frequency is not None and abs(frequency - 1000) < 30 else None


def _wav_bytes() -> bytes:
    rate = 16000
    t = np.arange(rate) / rate
    samples = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes()
    header = (
        b"RIFF"
        + (36 + len(samples)).to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + rate.to_bytes(4, "little")
        + (rate * 2).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + len(samples).to_bytes(4, "little")
    )
    return header + samples


async def test_a_doorbell_without_a_speaker_says_talk_is_not_supported(
    make_bridge: BridgeFactory, world: SimWorld, talk_browser: Any
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{world.base_url}/_sim/doorbells/Front Door/media", json={"talk": False}) as r,
    ):
        assert r.status == 200, await r.text()
    bridge = await make_bridge()
    page, watch = await live_page(talk_browser, bridge)
    await page.locator("#talk").hover()
    await page.mouse.down()
    await until(lambda: _state_is(page, "unsupported"), 20)
    assert await page.text_content("#talk-state") == "Talk not supported by this doorbell"
    await page.mouse.up()
    # The live view carries on.
    assert await page.text_content("#transport") == "WebRTC"
    assert [e for e in watch.errors if "501 (Not Implemented)" not in e] == []


async def test_a_dropped_call_ends_the_talk_and_the_page_says_so(
    make_bridge: BridgeFactory, world: SimWorld, talk_browser: Any
) -> None:
    bridge = await make_bridge()
    page, _watch = await live_page(talk_browser, bridge)
    await page.locator("#talk").hover()
    await page.mouse.down()
    await until(lambda: _state_is(page, "talking"), 15)
    await until(lambda: _hears_1khz(world), 20)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{world.base_url}/_sim/doorbells/Front Door/fault", json={"fault": "drop"}) as r,
    ):
        assert r.status == 200, await r.text()
    # Still holding the button, but the doorbell no longer hears it: the page must not pretend.
    await until(lambda: _state_is(page, "error"), 15)
    assert (await page.text_content("#talk-state") or "").startswith("Talk ended: ")
    await page.mouse.up()
    # The doorbell is free again: the API may talk.
    async with aiohttp.ClientSession() as http:
        talker = await until(lambda: _talker(http, bridge), 10)
        assert talker is True
    await shot(page, "talk-ended")


async def _talker(http: aiohttp.ClientSession, bridge: Bridge) -> bool:
    async with http.get(f"{bridge.http_url}api/streams?src=front-door") as resp:
        body = await resp.json()
    viewers = body.get("webrtc", {}).get("viewers", [])
    return bool(viewers) and not any(v["talking"] for v in viewers)


async def test_the_talk_route_is_guarded_and_checks_its_input(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    url = f"{bridge.http_url}api/webrtc/session/no-such-session/talk"
    async with aiohttp.ClientSession() as http:
        # Another site's page cannot make a viewer talk (the guard of every state change).
        evil = {"Origin": "http://evil.example"}
        async with http.post(url, json={"action": "start"}, headers=evil) as resp:
            assert resp.status == 403
        async with http.post(url, json={"action": "start"}) as resp:
            assert resp.status == 404
            assert "no such WebRTC session" in (await resp.json())["error"]
        async with http.get(url) as resp:
            assert resp.status == 404


async def test_a_viewer_that_offered_no_microphone_cannot_talk(make_bridge: BridgeFactory) -> None:
    """A WHEP client whose audio is recvonly (every NVR and card so far) gets 400, not a talk."""
    bridge = await make_bridge()
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
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
                location = resp.headers["Location"]
                answer = await resp.text()
            assert "a=sendonly" in answer.split("m=audio", 1)[1]  # as before talk existed
            talk = bridge.http_url + location.lstrip("/") + "/talk"
            async with http.post(talk, json={"action": "start"}) as resp:
                assert resp.status == 400
                assert "sends no audio" in (await resp.json())["error"]
            for junk in ({"action": "shout"}, [], "start"):
                async with http.post(talk, json=junk) as resp:
                    assert resp.status == 400
            async with http.post(talk, data=b"{not json") as resp:
                assert resp.status == 400
            async with http.post(talk, json={"action": "stop"}) as resp:
                assert resp.status == 200
                assert await resp.json() == {"talking": False}
            async with http.get(talk) as resp:
                assert await resp.json() == {"talking": False, "ended": None}
            async with http.delete(bridge.http_url + location.lstrip("/")) as resp:
                assert resp.status == 200
    finally:
        await pc.close()
