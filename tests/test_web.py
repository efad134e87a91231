"""The browser page in real headless Chromium against a whole bridge and the simulator.

The page is plain HTML/JS modules served by the bridge; these tests drive it the way a user
would and check what the user would see: pictures that move, the transport actually used,
the doorbell banner, clips that seek, the login gate, and a layout that fits a phone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge.redact import Secret
from bridge.routes import web as web_page
from bridge.routes.auth import LoginTokens, basic_auth_middleware
from bridge.routes.common import DEVICES
from bridge.service import Bridge
from bridge.sim.world import SimWorld
from bridge.skybell.triggers import WEBHOOK_PATH, add_webhook_triggers

from .conftest import FakeClock
from .serve_util import BridgeFactory, basic, get_json
from .test_clips_api import wait_for_clip
from .web_util import (  # noqa: F401 - browser_fixture is a fixture
    PLAYBACK,
    browser_fixture,
    count_is,
    expected_only,
    frames,
    new_page,
    playing,
    shot,
    stamp,
    stamp_or_none,
    transport_is,
    until,
)

VIEWS = ["#/", "#/live/front-door", "#/clips", "#/events", "#/status", "#/settings"]


async def webrtc_sessions(bridge: Bridge, name: str = "front-door") -> int:
    _, body = await get_json(bridge.http_url + f"api/streams?src={name}")
    sessions: int = body["webrtc"]["sessions"]
    return sessions


@pytest.mark.slow
async def test_home_grid_without_waking_anyone_and_every_view_fits_360px(
    make_bridge: BridgeFactory, browser: Any
) -> None:
    bridge = await make_bridge()
    page, watch = await new_page(browser)
    await page.goto(bridge.http_url)
    cards = page.locator("#doorbells article.doorbell")
    await until(lambda: count_is(cards, 2))
    names = await page.locator("#doorbells article h2").all_text_contents()
    assert sorted(names) == ["Back Garden", "Front Door"]
    await page.wait_for_selector("text=Battery 87%")  # Back Garden reports its battery
    assert await page.locator("button", has_text="Load snapshot").count() == 2
    await shot(page, "home")
    # Keyboard: the first Tab reaches the skip link, which moves focus without routing away.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    assert await page.evaluate("[document.activeElement.id, location.hash]") == ["view", ""]
    # Cards wait for "Load snapshot": opening the page woke no doorbell.
    _, streams = await get_json(bridge.http_url + "api/streams")
    assert {s["state"] for s in streams.values()} == {"idle"}

    await page.get_by_role("button", name="Load snapshot of Back Garden").click()
    img = page.locator('article[data-stream="back-garden"] .thumb img')
    await img.wait_for(timeout=20000)
    assert await img.evaluate("i => i.complete && i.naturalWidth > 0")

    phone, phone_watch = await new_page(browser, width=360, height=740)
    for view in VIEWS:
        await phone.goto(bridge.http_url + view)
        await phone.wait_for_selector("main h1")
        if view.startswith("#/live"):
            await until(lambda: transport_is(phone, "WebRTC"), 20)
        await phone.wait_for_timeout(300)  # late fills (polls) land before measuring
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{view} scrolls sideways: {width} px"
        slug = view.strip("#/").replace("/", "-") or "home"
        await shot(phone, f"{slug}-360")
    for view in VIEWS[2:]:
        await page.goto(bridge.http_url + view)
        await page.wait_for_selector("main h1")
        await page.wait_for_timeout(300)
        await shot(page, view.strip("#/"))
    urls = await page.locator("#stream-urls code").all_text_contents()
    assert bridge.http_url + "api/stream.m3u8?src=front-door" in urls
    assert any(u.startswith("rtsp://127.0.0.1:") and u.endswith("/back-garden") for u in urls)
    assert watch.errors == []
    assert phone_watch.errors == []


@pytest.mark.slow
async def test_live_view_plays_over_webrtc_on_loopback_and_ends_the_session(
    make_bridge: BridgeFactory, browser: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.webrtc")
    bridge = await make_bridge()
    page, watch = await new_page(browser)
    started = time.monotonic()
    await page.goto(bridge.http_url + "#/live/front-door")
    await until(lambda: frames(page, "#live-video"), 20, step=0.02)
    first_frame = time.monotonic() - started
    before = await playing(page)
    assert await page.text_content("#transport") == "WebRTC"
    await page.wait_for_timeout(1000)
    after = await page.evaluate(PLAYBACK, "#live-video")
    assert after["t"] > before["t"] + 0.5
    assert after["frames"] > before["frames"] + 5
    frame_a, latency = await stamp(page, "#live-video")
    frame_b, _ = await stamp(page, "#live-video")
    assert frame_b > frame_a  # the doorbell's own frame counter moves on screen
    # The page's getStats: the media flows between 127.0.0.1 ports only.
    path = await until(lambda: _path(page))
    local, remote = (side.strip().rsplit(":", 1)[0] for side in path.split("(")[0].split("↔"))
    assert (local, remote) == ("127.0.0.1", "127.0.0.1"), path
    assert "ms" in (await page.text_content("#latency") or "")
    print(
        f"\nWebRTC: first frame {first_frame:.2f} s after navigation "
        f"(page says: {await page.text_content('#first-frame')}); "
        f"glass-to-glass {latency:.0f} ms; page latency: {await page.text_content('#latency')}"
    )
    unmute = page.get_by_role("button", name="Unmute")
    await unmute.click()  # muted by default, sound on request
    assert await page.evaluate("document.querySelector('#live-video').muted") is False
    assert await page.get_by_role("button", name="Mute").get_attribute("aria-pressed") == "true"
    await shot(page, "live-webrtc")
    assert await webrtc_sessions(bridge) == 1
    async with page.expect_download() as saving:
        await page.get_by_role("button", name="Save snapshot").click()
    saved = await saving.value
    assert saved.suggested_filename.startswith("front-door-")
    jpeg = await asyncio.to_thread(Path(await saved.path()).read_bytes)
    assert jpeg[:2] == b"\xff\xd8"  # a JPEG of the frame on screen

    await page.goto(bridge.http_url + "#/")  # leaving the view ends the session
    await page.wait_for_selector("#doorbells article")
    await until(lambda: _no_sessions(bridge))
    assert ended_by_viewer(caplog) == 1  # a DELETE, not the bridge noticing the peer gone

    await page.goto(bridge.http_url + "#/live/front-door")
    await until(lambda: transport_is(page, "WebRTC"), 20)
    await page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
        document.dispatchEvent(new Event('visibilitychange')); }""")
    await until(lambda: _no_sessions(bridge))
    await page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});
        document.dispatchEvent(new Event('visibilitychange')); }""")
    await until(lambda: transport_is(page, "WebRTC"), 20)
    assert await webrtc_sessions(bridge) == 1
    assert ended_by_viewer(caplog) == 2
    # pagehide: a keepalive DELETE outlives the page (Playwright does not report requests of
    # an unloading page, so the bridge's log is the witness).
    await page.goto("about:blank")
    await until(lambda: _no_sessions(bridge))
    assert ended_by_viewer(caplog) == 3
    assert watch.errors == []


def ended_by_viewer(caplog: pytest.LogCaptureFixture) -> int:
    return sum("ended (ended by the viewer)" in r.getMessage() for r in caplog.records)


async def _path(page: Any) -> str | None:
    text = await page.text_content("#path")
    return text if text and "↔" in text else None


async def _no_sessions(bridge: Bridge) -> bool:
    return await webrtc_sessions(bridge) == 0


@pytest.mark.slow
async def test_falls_back_to_hls_then_mjpeg_when_blocked(
    make_bridge: BridgeFactory, browser: Any
) -> None:
    bridge = await make_bridge()
    page, watch = await new_page(browser)
    await page.route("**/api/webrtc?*", lambda route: route.abort())
    started = time.monotonic()
    await page.goto(bridge.http_url + "#/live/front-door")
    await until(lambda: frames(page, "#live-video"), 30, step=0.05)
    first_frame = time.monotonic() - started
    await playing(page)
    assert await page.text_content("#transport") == "HLS (MSE)"
    await page.wait_for_timeout(1500)  # settle at the live edge
    _, latency = await stamp(page, "#live-video")
    print(
        f"\nHLS (MSE): first frame {first_frame:.2f} s after navigation; glass-to-glass "
        f"{latency:.0f} ms; page latency: {await page.text_content('#latency')}"
    )
    assert "WebRTC failed" in (await page.text_content("#attempts") or "")
    await shot(page, "live-hls")

    await page.route("**/api/stream.m3u8?*", lambda route: route.abort())
    await page.route("**/api/hls/**", lambda route: route.abort())
    await page.goto(bridge.http_url + "#/live/back-garden")
    await until(lambda: transport_is(page, "MJPEG"), 30)
    assert await page.locator("#live-video").is_hidden()
    frame_a, _ = await until(lambda: stamp_or_none(page, "#live-mjpeg"))
    await page.wait_for_timeout(700)
    frame_b, latency = await stamp(page, "#live-mjpeg")
    assert frame_b > frame_a  # the <img> keeps getting new pictures
    print(f"MJPEG: glass-to-glass {latency:.0f} ms")
    assert await page.get_by_role("button", name="Unmute").is_disabled()
    await shot(page, "live-mjpeg")
    assert expected_only(watch, "net::ERR_FAILED") == []


async def bridge_with_webhooks(make_bridge: BridgeFactory, config: str | None = None) -> Bridge:
    """A bridge whose doorbells report presses to its webhook, as SkyBell's cloud does."""
    bridge = await make_bridge(config, SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET="hook-secret")
    await add_webhook_triggers(
        bridge.client,
        bridge.app[DEVICES],
        bridge.http_url + WEBHOOK_PATH.lstrip("/"),
        secret=Secret("hook-secret"),
    )
    return bridge


@pytest.mark.slow
async def test_doorbell_press_shows_the_banner_at_once(
    make_bridge: BridgeFactory, world: SimWorld, browser: Any
) -> None:
    rule = (
        '[[rules]]\nname = "porch light"\non = ["doorbell"]\ndo = [{ scene = "Porch light on" }]\n'
    )
    bridge = await bridge_with_webhooks(make_bridge, rule)
    page, watch = await new_page(browser)
    await page.goto(bridge.http_url + "#/events")
    await page.wait_for_selector("#feed-state[data-state=open]")
    pressed = time.monotonic()
    await world.press("Front Door")
    banner = page.locator("#banner")
    await banner.wait_for(state="visible", timeout=2000)
    print(f"\nbanner {time.monotonic() - pressed:.2f} s after the press")
    assert "Front Door" in (await banner.text_content() or "")
    await page.locator("#event-list li.ev-doorbell").first.wait_for(timeout=2000)
    # What the rule did reaches the log a moment later; the list picks it up by itself.
    result = page.locator("#event-list li.ev-doorbell .results li.ok")
    await result.wait_for(timeout=10000)
    assert "Porch light on" in (await result.text_content() or "")
    await shot(page, "events")
    await banner.get_by_role("link", name="View live").click()
    await page.wait_for_url("**#/live/front-door")
    assert await banner.is_hidden()
    await until(lambda: transport_is(page, "WebRTC"), 20)
    assert watch.errors == []


@pytest.mark.slow
async def test_a_press_during_the_first_load_stays_listed(
    make_bridge: BridgeFactory, world: SimWorld, browser: Any
) -> None:
    # The page's first read of the log can answer after a press the feed already showed: that
    # older answer must not wipe the press from the list (a loaded CI box hit exactly this).
    bridge = await bridge_with_webhooks(make_bridge)
    page, watch = await new_page(browser)
    release = asyncio.Event()

    async def hold_first_read(route: Any) -> None:
        answer = await route.fetch()  # the log as it was before the press
        await release.wait()
        await route.fulfill(response=answer)

    await page.route(lambda url: "/api/events?" in url, hold_first_read)
    await page.goto(bridge.http_url + "#/events")
    await page.wait_for_selector("#feed-state[data-state=open]")
    await page.wait_for_selector("#event-list[aria-busy=true]", state="attached")
    await world.press("Front Door")
    pressed = page.locator("#event-list li.ev-doorbell")
    await pressed.first.wait_for(timeout=10000)
    release.set()
    await page.wait_for_selector("#event-list[aria-busy=false]", state="attached")
    assert await pressed.count() == 1, "the older answer did not wipe the press"
    assert watch.errors == []


@pytest.mark.slow
async def test_clip_plays_seeks_and_deletes_after_confirmation(
    make_bridge: BridgeFactory, browser: Any
) -> None:
    bridge = await make_bridge(SKYBELL_BRIDGE_RECORD_PREROLL="0")
    page, watch = await new_page(browser)
    await page.goto(bridge.http_url + "#/live/front-door")
    await until(lambda: transport_is(page, "WebRTC"), 20)
    await page.get_by_role("button", name="Record now").click()
    stop = page.get_by_role("button", name="Stop recording")
    await stop.wait_for()
    await page.wait_for_timeout(3000)
    await stop.click()
    await page.get_by_role("button", name="Record now").wait_for()
    clip = await wait_for_clip(bridge, device="front-door", event="manual")

    ranges: list[str] = []
    page.on(
        "request",
        lambda r: ranges.append(r.headers.get("range", "")) if "/video" in r.url else None,
    )
    await page.goto(bridge.http_url + "#/clips")
    button = page.locator(f'button.clip[data-clip="{clip["id"]}"]')
    await button.wait_for()
    assert await page.locator(".timeline .marker").count() == 1
    await shot(page, "clips")
    await button.click()
    video = page.locator("#clip-video")
    await video.wait_for()
    duration = await video.evaluate(
        "v => new Promise(r => v.readyState >= 1 ? r(v.duration) : "
        "v.addEventListener('loadedmetadata', () => r(v.duration)))"
    )
    assert duration > 2
    seeked = await video.evaluate(
        "v => new Promise(r => { v.addEventListener('seeked', () => r(v.currentTime), "
        "{once: true}); v.currentTime = 1.5; })"
    )
    assert abs(seeked - 1.5) < 0.2
    await video.evaluate("v => { v.muted = true; return v.play(); }")
    await until(lambda: video.evaluate("v => v.currentTime > 1.8"))
    assert any(r.startswith("bytes=") for r in ranges)  # the browser seeks by Range
    await shot(page, "clip-player")

    page.once("dialog", lambda dialog: dialog.dismiss())  # Playwright awaits the coroutine
    await page.locator("#clip-delete").click()
    await page.wait_for_timeout(300)
    status, _ = await get_json(bridge.http_url + f"api/clips/{clip['id']}")
    assert status == 200  # "Cancel" kept it

    messages: list[str] = []

    async def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    await page.locator("#clip-delete").click()
    await button.wait_for(state="detached")
    assert "Front Door" in messages[0]
    status, _ = await get_json(bridge.http_url + f"api/clips/{clip['id']}")
    assert status == 404
    assert await page.locator("#clip-player").is_hidden()
    assert watch.errors == []


@pytest.mark.slow
async def test_login_gate_with_a_password(make_bridge: BridgeFactory, browser: Any) -> None:
    bridge = await make_bridge(
        SKYBELL_BRIDGE_SERVER_USERNAME="admin", SKYBELL_BRIDGE_SERVER_PASSWORD="door-2468"
    )
    page, watch = await new_page(browser, width=360, height=740)
    await page.goto(bridge.http_url)
    await page.wait_for_selector("#login-user")
    assert await page.locator("#doorbells").count() == 0
    refused = await page.evaluate(
        "async () => { const r = await fetch('/api/streams'); "
        "return [r.status, r.headers.get('WWW-Authenticate')]; }"
    )
    assert refused == [401, None]  # no Basic challenge: the browser's own dialog stays away
    assert await page.evaluate("document.documentElement.scrollWidth") <= 360
    await shot(page, "login-360")

    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill("wrong")
    await page.get_by_role("button", name="Log in").click()
    error = page.locator("#login-error")
    await error.wait_for(state="visible")
    assert "Wrong username or password" in (await error.text_content() or "")

    await page.get_by_label("Password").fill("door-2468")
    await page.get_by_role("button", name="Log in").click()
    await until(lambda: count_is(page.locator("#doorbells article"), 2))
    await page.wait_for_selector("#feed-state[data-state=open]")  # SSE with the cookie
    (cookie,) = await page.context.cookies()
    assert cookie["name"] == "skybell_session"
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/")
    assert "skybell_session" not in await page.evaluate("document.cookie")
    ok = await page.evaluate("async () => (await fetch('/api/streams')).status")
    assert ok == 200
    stop = "async () => (await fetch('/api/record?src=front-door&action=stop', {method: 'POST'})).status"
    assert await page.evaluate(stop) == 200  # a change from the page itself (with its Origin)

    # API clients keep using Basic; without it they get the challenge.
    status, _ = await get_json(bridge.http_url + "api/streams", headers=basic("admin", "door-2468"))
    assert status == 200
    async with aiohttp.ClientSession() as http, http.get(bridge.http_url + "api/streams") as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    async with (
        aiohttp.ClientSession(cookies={"skybell_session": cookie["value"]}) as http,
        http.get(bridge.http_url + "api/streams") as resp,
    ):
        assert resp.status == 200

    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_selector("#login-user")
    gone = await page.evaluate("async () => (await fetch('/api/streams')).status")
    assert gone == 401
    async with (
        aiohttp.ClientSession(cookies={"skybell_session": cookie["value"]}) as http,
        http.get(bridge.http_url + "api/streams") as resp,
    ):
        assert resp.status == 401  # the session ended on the server, not only in the browser
    assert expected_only(watch, "status of 401") == []


# -- the server side, without a browser ---------------------------------------------------------

SECRET = "TOP SECRET"


def static_root(tmp_path: Path) -> Path:
    """A small web folder, plus things beside and inside it that must never be served."""
    root = tmp_path / "web"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>page</title>")
    (root / "js" / "main.js").write_text("export {};")
    (root / "app.css").write_text("body {}")
    (root / "notes.md").write_text("not a page file")
    (root / ".draft.js").write_text("hidden")
    (tmp_path / "secret.txt").write_text(SECRET)
    (root / "link.js").symlink_to(tmp_path / "secret.txt")  # a .js name, outside the folder
    return root


async def page_client(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    tmp_path: Path,
    password: str | None = None,
) -> TestClient:
    middlewares = [basic_auth_middleware("admin", password)] if password else []
    app = web.Application(middlewares=middlewares)

    async def secret(_request: web.Request) -> web.Response:
        return web.json_response({"secret": SECRET})

    app.router.add_get("/api/secret", secret)
    app.router.add_post("/api/secret", secret)
    web_page.setup(
        app,
        rtsp_port=8554,
        rtsp_host="0.0.0.0",
        username="admin",
        password=password,
        root=static_root(tmp_path),
    )
    return await aiohttp_client(app)


async def raw_get(client: TestClient, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written: no client-side ``..`` clean-up."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(data.split(b" ", 2)[1]), data


async def test_page_files_have_types_revalidation_and_a_policy(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    client = await page_client(aiohttp_client, tmp_path)
    for path, kind in [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/js/main.js", "text/javascript"),
        ("/app.css", "text/css"),
    ]:
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.headers["Content-Type"] == f"{kind}; charset=utf-8"
        assert resp.headers["Cache-Control"] == "no-cache"  # no hashed names: revalidate
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    page = await client.get("/")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    again = await client.get("/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status == 304
    assert (await client.head("/js/main.js")).status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/js/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/js/%2e%2e/%2e%2e/secret.txt",
        "/js%2f..%2f..%2fsecret.txt",
        "/link.js",
        "/notes.md",
        "/.draft.js",
        "/web/index.html",
        "/js/",
    ],
)
async def test_page_files_cannot_escape_the_folder(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path, path: str
) -> None:
    client = await page_client(aiohttp_client, tmp_path)
    status, data = await raw_get(client, path)
    assert status == 404, path
    assert SECRET.encode() not in data


async def test_login_sets_a_session_cookie_and_basic_still_works(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    client = await page_client(aiohttp_client, tmp_path, password="pw-1357")
    assert (await client.get("/")).status == 200  # the page itself (and its login form) is open
    resp = await client.get("/api/secret")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    resp = await client.get("/api/secret", headers={"Sec-Fetch-Site": "same-origin"})
    assert resp.status == 401
    assert "WWW-Authenticate" not in resp.headers  # the page's own requests: no browser dialog
    assert (await client.get("/nothing-here")).status == 401  # only marked routes are open
    config = await (await client.get("/api/config")).json()
    assert config == {
        "auth": True,
        "authenticated": False,
        "rtsp_port": 8554,
        "rtsp_host": None,  # a wildcard: the page uses the host it was loaded from
        "features": {"automation": False},
        "lan_without_password": False,
    }
    assert (await client.get("/api/secret", headers=basic("admin", "pw-1357"))).status == 200
    cross = {**basic("admin", "pw-1357"), "Origin": "http://example.net"}
    assert (await client.post("/api/secret", headers=cross)).status == 403
    config = await (await client.get("/api/config", headers=basic("admin", "pw-1357"))).json()
    assert config["authenticated"] is True

    resp = await client.post("/api/login", json={"username": "admin", "password": "nope"})
    assert resp.status == 401
    assert "WWW-Authenticate" not in resp.headers
    resp = await client.post("/api/login", json={"username": "admin", "password": "pw-1357"})
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    for part in ("skybell_session=", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="):
        assert part in cookie
    token = resp.cookies["skybell_session"].value
    assert (await client.get("/api/secret")).status == 200  # the jar sends the cookie
    assert (await (await client.get("/api/config")).json())["authenticated"] is True

    elsewhere = {"Origin": "http://127.0.0.1:8123"}  # another program's page on this host
    assert (await client.post("/api/secret", headers=elsewhere)).status == 403
    assert (await client.get("/api/secret", headers=elsewhere)).status == 200

    assert (await client.post("/api/logout")).status == 200
    resp = await client.get("/api/secret", cookies={"skybell_session": token})
    assert resp.status == 401  # ended on the server, whatever the browser keeps

    form = await client.post("/api/login", data={"username": "admin", "password": "pw-1357"})
    assert form.status == 200  # a plain HTML form works too
    assert (await client.post("/api/login", data=b"x" * 5000)).status == 413
    assert (await client.post("/api/login", json=["admin"])).status == 400


async def test_repeated_wrong_passwords_are_slowed_down(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    client = await page_client(aiohttp_client, tmp_path, password="pw-1357")
    for _ in range(5):
        resp = await client.post("/api/login", json={"username": "admin", "password": "guess"})
        assert resp.status == 401
    resp = await client.post("/api/login", json={"username": "admin", "password": "pw-1357"})
    assert resp.status == 429
    assert 0 < int(resp.headers["Retry-After"]) <= 61


async def test_without_a_password_everything_is_open(
    aiohttp_client: Callable[..., Awaitable[TestClient]], tmp_path: Path
) -> None:
    client = await page_client(aiohttp_client, tmp_path)
    assert (await client.get("/api/secret")).status == 200
    config = await (await client.get("/api/config")).json()
    assert (config["auth"], config["authenticated"]) == (False, True)
    login = await client.post("/api/login", json={"username": "", "password": ""})
    assert await login.json() == {"ok": True, "auth": False}


def test_sessions_expire_are_revoked_and_bounded(clock: FakeClock) -> None:
    store = LoginTokens(ttl=60, max_sessions=3, clock=clock)
    first = store.create()
    assert store.valid(first)
    assert not any(store.valid(t) for t in ("made-up", "", "x" * 500))
    clock.advance(61)
    assert not store.valid(first)
    tokens = [store.create() for _ in range(4)]
    assert not store.valid(tokens[0])  # the oldest went to make room
    assert all(store.valid(t) for t in tokens[1:])
    assert len(store) == 3
    store.revoke(tokens[1])
    assert not store.valid(tokens[1])
    store.revoke("unknown")  # harmless
