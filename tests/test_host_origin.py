"""Issue 12, finding 4 (any website could drive a bridge without a password; any Host was
accepted), plus the composition root's wiring of findings 3 and 6, through a whole bridge."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest

from bridge.routes.auth import AUTH_LIMITER
from bridge.routes.origin import HostPolicy, host_name, same_origin
from bridge.service import Bridge
from bridge.skybell.triggers import WEBHOOK_PATH

from .serve_util import BridgeFactory, basic, raw_http
from .test_rtsp import RawClient

EVIL = "http://evil.example"


def http_port(bridge: Bridge) -> int:
    """The HTTP port the bridge bound."""
    return int(bridge.http_url.rstrip("/").rsplit(":", 1)[1])


async def status(method: str, url: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as resp:  # type: ignore[arg-type]
        body = await resp.read()
        return resp.status, json.loads(body) if body.startswith(b"{") else {}


async def test_finding_4_cross_origin_post_without_a_password_is_403(
    make_bridge: BridgeFactory,
) -> None:
    bridge = await make_bridge()
    base = bridge.http_url
    warm = base + "api/streams/warm?src=front-door&seconds=3600"
    # A form or fetch() with a text/plain body needs no preflight: the browser just sends it.
    plain = {"Content-Type": "text/plain", "Origin": EVIL}
    code, body = await status("POST", warm, headers=plain, data="x")
    assert code == 403
    assert (
        body["error"]
        == "cross-origin request refused: 'http://evil.example' is not this bridge's page"
    )
    for path in ("api/record?src=front-door", "api/webrtc?src=front-door"):
        assert (await status("POST", base + path, headers=plain, data="x"))[0] == 403
    assert (await status("POST", warm, headers={"Origin": "null"}))[0] == 403  # sandboxed frame
    other_port = {"Origin": "http://127.0.0.1:8123"}  # another program's page on this host
    assert (await status("DELETE", base + "api/clips/1", headers=other_port))[0] == 403
    _, streams = await status("GET", base + "api/streams?src=front-door")
    assert streams["state"] == "idle"  # nothing was switched on
    # The bridge's own page (same origin), and API clients that send no Origin, still work.
    same = {"Origin": base.rstrip("/")}
    assert (await status("POST", base + "api/login", headers=same, json={}))[0] == 200
    assert (await status("POST", base + "api/logout"))[0] == 200
    assert (await status("GET", base + "api/streams", headers={"Origin": EVIL}))[0] == 200


async def test_finding_4_foreign_host_is_refused_and_own_names_are_accepted(
    make_bridge: BridgeFactory,
) -> None:
    bridge = await make_bridge(
        SKYBELL_BRIDGE_SERVER_ALLOWED_HOSTS="bridge.example.net, nvr.lan:8443",
        SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET="hook-secret-1",
    )
    url = bridge.http_url + "api/streams"
    # DNS rebinding: evil.example now resolves to this bridge, but the browser says its name.
    code, body = await status("GET", url, headers={"Host": "evil.example"})
    assert code == 421
    assert "server.allowed_hosts" in str(body["error"])
    for bad in ("evil.example:1984", "localhost.evil.example", "bridge.example.net.evil", "a b"):
        assert (await status("GET", url, headers={"Host": bad}))[0] == 421, bad
    good = [
        "localhost",
        "LOCALHOST:1984",
        "127.0.0.1:1984",
        "[::1]:1984",
        "192.168.1.77:1984",  # an IP literal: what a LAN user types, never a rebinding name
        "app.localhost",
        "bridge.example.net",  # server.allowed_hosts
        "nvr.lan",
    ]
    for host in good:
        assert (await status("GET", url, headers={"Host": host}))[0] == 200, host
    # The health check and the webhook skip the Host check: the cloud posts to the user's
    # public name, and the webhook is guarded by its own secret.
    assert (await status("GET", bridge.http_url + "api/health", headers={"Host": "x.y"}))[0] == 200
    code, body = await status(
        "POST", bridge.http_url + WEBHOOK_PATH.lstrip("/"), headers={"Host": "doorbell.example.org"}
    )
    assert code == 401  # refused by the secret check, not by the Host check

    # Finding 6: a secret header of bytes that are not UTF-8 is a wrong secret, not a 500.
    request = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n".encode()
        + b"x-skybell-secret: \xff\xfe\r\nConnection: close\r\n\r\n{}"
    )
    header = bridge.settings.events.webhook_header
    request = request.replace(b"x-skybell-secret", header.encode())
    code_raw, raw_body = await raw_http(http_port(bridge), request)
    assert code_raw == 403
    assert json.loads(raw_body) == {"error": f"wrong {header} header"}


async def test_finding_3_bridge_shares_one_limiter_between_http_login_and_rtsp(
    make_bridge: BridgeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(
        SKYBELL_BRIDGE_SERVER_USERNAME="admin", SKYBELL_BRIDGE_SERVER_PASSWORD="pw-9753"
    )
    limiter = bridge.app[AUTH_LIMITER]
    client = await RawClient.connect(int(bridge.rtsp_url.rstrip("/").rsplit(":", 1)[1]))
    wrong = "Basic " + base64.b64encode(b"admin:guess").decode()
    for _ in range(2):
        assert (
            await client.request("DESCRIBE", bridge.rtsp_url + "front-door", Authorization=wrong)
        ).status == 401
    client.writer.close()
    for _ in range(2):
        code, _ = await status(
            "GET", bridge.http_url + "api/streams", headers=basic("admin", "nope")
        )
        assert code == 401
    code, _ = await status(
        "POST", bridge.http_url + "api/login", json={"username": "admin", "password": "x"}
    )
    assert code == 401
    assert limiter.failures("127.0.0.1") == 5  # one count, whichever door was tried
    # Finding 6 on a whole bridge: non-ASCII Basic is a 401, not a 500.
    request = b"GET /api/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic \xc3\xa9\r\nConnection: close\r\n\r\n"
    assert (await raw_http(http_port(bridge), request))[0] in (401, 429)
    assert not [r for r in caplog.records if r.exc_info]


def test_finding_4_host_and_origin_rules() -> None:
    policy = HostPolicy(("0.0.0.0", "bridge.lan"), "extra.example, *.nothing, [fe80::1]:80")
    assert policy.allows(None)  # no Host: not a browser
    for host in (
        "bridge.lan:1984",
        "extra.example",
        "fe80::1",
        "[fe80::1]",
        "10.1.2.3",
        "localhost.",
    ):
        assert policy.allows(host), host
    for host in ("0.0.0.0.evil.example", "", ":80", "[::1", "a@b", "bridge.lan:x", "é.example"):
        assert not policy.allows(host), host
    assert HostPolicy((), "*").allows("anything.example")
    assert host_name("[::1]:80") == "::1"
    assert host_name("Example.COM.:8080") == "example.com"
    assert same_origin("http://127.0.0.1:1984", "127.0.0.1:1984")
    assert same_origin("https://bridge.example:443", "bridge.example")
    assert same_origin("http://bridge.example", "bridge.example:80")
    assert not same_origin("http://127.0.0.1:8123", "127.0.0.1:1984")
    assert not same_origin("null", "127.0.0.1:1984")
    assert not same_origin("http://[::1", "127.0.0.1")
