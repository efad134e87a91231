"""Issue 12, findings 3, 6 and 7: one limit on password guessing for the login form, Basic on
the API and RTSP; Digest that cannot be replayed; credentials in any bytes refused cleanly.

The rig is a real HTTP app (the auth middleware and the login form) and a real RTSP server on
127.0.0.1 that share one ``AuthLimiter`` on a clock the test moves, the way the composition
root shares one between the listeners. Its RTSP server has no streams, so an authorized
DESCRIBE is a 404, a refused one 401, and a locked-out address gets 503 and a hang-up.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.app import build_auth_limiter
from bridge.authlimit import AuthLimiter, parse_proxies
from bridge.config import ServerSettings
from bridge.errors import ConfigError
from bridge.routes import web as web_page
from bridge.routes.auth import AUTH_LIMITER, basic_auth_middleware, parse_basic
from bridge.rtsp import RtspServer
from bridge.rtsp.auth import Authenticator, ConnectionAuth, parse_digest_fields

from .conftest import FakeClock
from .serve_util import raw_http
from .test_rtsp import RawClient

USER = "admin"
PASSWORD = "pw-2468"
ClientFactory = Callable[..., Awaitable[TestClient]]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest(challenge: str, method: str, uri: str, password: str = PASSWORD) -> str:
    """An RFC 2617 Digest answer (no qop, as live555-based NVRs send) to ``challenge``."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm, nonce = fields["realm"], fields["nonce"]
    response = md5(f"{md5(f'{USER}:{realm}:{password}')}:{nonce}:{md5(f'{method}:{uri}')}")
    return (
        f'Digest username="{USER}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}"'
    )


@dataclass
class Rig:
    http: TestClient
    rtsp: RtspServer
    limiter: AuthLimiter

    def url(self, name: str = "front-door") -> str:
        return f"rtsp://127.0.0.1:{self.rtsp.port}/{name}"

    async def rtsp_client(self) -> RawClient:
        return await RawClient.connect(self.rtsp.port)

    async def describe(self, authorization: str, name: str = "front-door") -> int:
        """One DESCRIBE on a fresh connection; its status."""
        client = await self.rtsp_client()
        try:
            return (
                await client.request("DESCRIBE", self.url(name), Authorization=authorization)
            ).status
        finally:
            await close(client)

    async def login(self, user: str, password: str, **headers: str) -> int:
        form = {"username": user, "password": password}
        resp = await self.http.post("/api/login", json=form, headers=headers)
        self.http.session.cookie_jar.clear()  # each request stands on its own credentials
        return resp.status

    async def secret(self, authorization: str, **headers: str) -> int:
        resp = await self.http.get(
            "/api/secret", headers={"Authorization": authorization, **headers}
        )
        return resp.status


async def close(client: RawClient) -> None:
    client.writer.close()
    with contextlib.suppress(ConnectionError):
        await client.writer.wait_closed()


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(
    aiohttp_client: ClientFactory, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[RigFactory]:
    servers: list[RtspServer] = []

    async def factory(trusted_proxies: str = "", **limits: Any) -> Rig:
        limiter = AuthLimiter(
            clock=clock, user_slowdown=0.0, trusted_proxies=parse_proxies(trusted_proxies), **limits
        )
        app = web.Application(middlewares=[basic_auth_middleware(USER, PASSWORD)])
        app[AUTH_LIMITER] = limiter

        async def secret(_request: web.Request) -> web.Response:
            return web.json_response({"secret": True})

        app.router.add_get("/api/secret", secret)
        web_page.setup(app, rtsp_port=0, username=USER, password=PASSWORD, root=tmp_path)
        http = await aiohttp_client(app)
        rtsp = RtspServer(
            lambda _name: None,
            host="127.0.0.1",
            port=0,
            username=USER,
            password=PASSWORD,
            auth="any",
            auth_limiter=limiter,
        )
        servers.append(rtsp)
        await rtsp.start()
        return Rig(http, rtsp, limiter)

    yield factory
    for server in servers:
        await server.close()


# -- finding 3: one limiter -----------------------------------------------------------------


async def test_finding_3_guessing_on_rtsp_is_limited_on_login_and_basic(
    make_rig: RigFactory, clock: FakeClock
) -> None:
    rig = await make_rig()
    client = await rig.rtsp_client()
    for _ in range(5):
        reply = await client.request("DESCRIBE", rig.url(), Authorization=basic(USER, "guess"))
        assert reply.status == 401
    # The sixth try, on the same connection, is refused unread and the connection closed.
    reply = await client.request("DESCRIBE", rig.url(), Authorization=basic(USER, PASSWORD))
    assert (reply.status, reply.reason) == (503, "Too Many Failed Authentications")
    assert int(reply.headers["retry-after"][0]) >= 1
    assert await client.reader.read() == b""
    await close(client)

    # The right password does not get through the lockout on the other paths either: a lockout
    # that let it through would tell a guesser when it had guessed right.
    resp = await rig.http.get("/api/secret", headers={"Authorization": basic(USER, PASSWORD)})
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert "too many failed sign-ins" in (await resp.json())["error"]
    assert await rig.login(USER, PASSWORD) == 429
    assert (
        await rig.describe(digest('realm="skybell-bridge", nonce="x"', "DESCRIBE", rig.url()))
        == 503
    )

    clock.advance(2)  # past the first wait: the right password works everywhere again
    assert await rig.secret(basic(USER, PASSWORD)) == 200
    assert await rig.login(USER, PASSWORD) == 200
    assert await rig.describe(basic(USER, PASSWORD)) == 404  # authorized; no such stream


async def test_finding_3_guessing_on_login_and_basic_is_limited_on_rtsp_with_growing_waits(
    make_rig: RigFactory, clock: FakeClock
) -> None:
    rig = await make_rig()
    for _ in range(3):
        assert await rig.login(USER, "guess") == 401
    for _ in range(2):
        assert await rig.secret(basic(USER, "guess")) == 401
    assert rig.limiter.failures("127.0.0.1") == 5
    assert await rig.describe(basic(USER, PASSWORD)) == 503
    # No credentials at all is a first visit, not a guess: it is challenged, never counted.
    assert (await rig.http.get("/api/secret")).status == 401
    assert rig.limiter.failures("127.0.0.1") == 5

    waits = []
    for _ in range(4):
        resp = await rig.http.get("/api/secret", headers={"Authorization": basic(USER, "guess")})
        assert resp.status == 429
        wait = int(resp.headers["Retry-After"])
        waits.append(wait)
        clock.advance(wait)
        assert await rig.secret(basic(USER, "guess")) == 401  # one more wrong guess once free
    assert waits == [2, 3, 5, 9]  # 1, 2, 4, 8 s, rounded up: each failure doubles the wait


async def test_finding_3_right_user_from_another_address_still_gets_in(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(trusted_proxies="127.0.0.1")  # the test client plays a reverse proxy
    guesser = {"X-Forwarded-For": "203.0.113.7"}
    for _ in range(5):
        assert await rig.secret(basic(USER, "guess"), **guesser) == 401
    assert await rig.secret(basic(USER, PASSWORD), **guesser) == 429
    # Behind the same proxy, the user's own address is not the guesser's.
    assert await rig.secret(basic(USER, PASSWORD), **{"X-Forwarded-For": "198.51.100.20"}) == 200
    assert await rig.login(USER, PASSWORD, **{"X-Forwarded-For": "198.51.100.21"}) == 200

    # A guess spread over many addresses alarms the username: that never refuses a clean
    # address (the right user still gets in), but every address now gets one free guess only.
    for i in range(25):
        assert await rig.secret(basic(USER, "guess"), **{"X-Forwarded-For": f"192.0.2.{i}"}) == 401
    assert rig.limiter.user_under_attack(USER)
    assert await rig.secret(basic(USER, PASSWORD), **{"X-Forwarded-For": "198.51.100.22"}) == 200
    assert await rig.login(USER, PASSWORD, **{"X-Forwarded-For": "198.51.100.23"}) == 200
    spread = {"X-Forwarded-For": "192.0.2.200"}
    assert await rig.secret(basic(USER, "guess"), **spread) == 401
    assert await rig.secret(basic(USER, "guess"), **spread) == 429


async def test_finding_3_x_forwarded_for_is_believed_only_from_trusted_proxies(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()  # no trusted proxies: the header is the client's own words
    for i in range(5):
        assert await rig.secret(basic(USER, "guess"), **{"X-Forwarded-For": f"192.0.2.{i}"}) == 401
    assert await rig.secret(basic(USER, PASSWORD), **{"X-Forwarded-For": "192.0.2.99"}) == 429

    limiter = AuthLimiter(trusted_proxies=parse_proxies("10.0.0.0/8, 2001:db8:ffff::1"))
    # Read from the right: the first hop that is no trusted proxy is the client; what it wrote
    # further left (a forged "1.2.3.4") proves nothing.
    assert limiter.client("10.0.0.2", ["1.2.3.4, 198.51.100.9", "10.0.0.1"]) == "198.51.100.9"
    assert limiter.client("2001:db8:ffff::1", ["192.0.2.5:4711"]) == "192.0.2.5"
    assert limiter.client("192.0.2.8", ["198.51.100.9"]) == "192.0.2.8"  # not from a proxy
    assert limiter.client("10.0.0.2", []) == "10.0.0.2"
    assert limiter.client("10.0.0.2", ["10.0.0.3"]) == "10.0.0.3"  # only proxies: the leftmost
    assert limiter.client("::ffff:192.0.2.1") == "192.0.2.1"
    # IPv6 is counted per /64: a guesser cannot step to a fresh address for every guess.
    assert limiter.client("2001:db8::1") == limiter.client("2001:db8::2") == "2001:db8::/64"
    assert limiter.client("2001:db8:0:1::1") != limiter.client("2001:db8::1")
    with pytest.raises(ValueError, match=r"'proxy\.lan' is not an IP address"):
        parse_proxies("10.0.0.1, proxy.lan")
    with pytest.raises(ConfigError) as caught:
        build_auth_limiter(ServerSettings(trusted_proxies="10.0.0.1,nonsense"))
    assert caught.value.key == "server.trusted_proxies"


def test_finding_3_limiter_forgets_quiet_addresses_and_stays_bounded(clock: FakeClock) -> None:
    limiter = AuthLimiter(clock=clock)
    for _ in range(5):
        limiter.failed("192.0.2.1", USER)
    assert limiter.retry_after("192.0.2.1") == 1.0
    clock.advance(3601)
    assert (limiter.failures("192.0.2.1"), limiter.retry_after("192.0.2.1")) == (0, 0.0)

    small = AuthLimiter(clock=clock, max_entries=3, user_alarm=4, user_slowdown=0.5)
    delays = [small.failed(f"192.0.2.{i}", USER) for i in range(10)]
    assert delays == [0.0] * 3 + [0.5] * 7  # a name guessed from many places: answers slow down
    assert small.stats()["addresses"] == 3  # a flood of addresses forgets the oldest


# -- finding 7: Digest replay --------------------------------------------------------------


async def test_finding_7_digest_replayed_on_a_new_connection_is_refused(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    first = await rig.rtsp_client()
    challenge = await first.request("DESCRIBE", rig.url())
    assert challenge.status == 401
    header = digest(challenge.headers["www-authenticate"][0], "DESCRIBE", rig.url())
    assert (await first.request("DESCRIBE", rig.url(), Authorization=header)).status == 404
    assert (await first.request("DESCRIBE", rig.url(), Authorization=header)).status == 404

    # Captured and replayed elsewhere: the nonce was issued to the first connection only.
    second = await rig.rtsp_client()
    replay = await second.request("DESCRIBE", rig.url(), Authorization=header)
    assert replay.status == 401
    assert "stale=TRUE" in replay.headers["www-authenticate"][0]  # a real client just retries
    fresh = digest(replay.headers["www-authenticate"][0], "DESCRIBE", rig.url())
    assert (await second.request("DESCRIBE", rig.url(), Authorization=fresh)).status == 404
    assert rig.limiter.failures("127.0.0.1") == 0  # a right answer on an old nonce is no guess
    await close(first)
    await close(second)


async def test_finding_7_digest_for_one_stream_does_not_open_another(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    client = await rig.rtsp_client()
    challenge = (await client.request("DESCRIBE", rig.url())).headers["www-authenticate"][0]
    header = digest(challenge, "DESCRIBE", rig.url("front-door"))
    assert (
        await client.request("DESCRIBE", rig.url("back-door"), Authorization=header)
    ).status == 401
    assert (
        await client.request("DESCRIBE", rig.url("front-door"), Authorization=header)
    ).status == 404
    await close(client)


def test_finding_7_digest_nonces_expire_unless_answered_and_nc_must_grow(clock: FakeClock) -> None:
    auth = Authenticator(USER, PASSWORD, "digest", clock=clock)
    url = "rtsp://127.0.0.1:8554/front-door"
    conn = ConnectionAuth()
    late = digest(auth.challenges(conn)[0], "DESCRIBE", url)
    clock.advance(61)
    assert auth.check("DESCRIBE", url, late, conn).result == "stale"  # answered too late
    header = digest(auth.challenges(conn)[0], "DESCRIBE", url)
    clock.advance(59)
    assert auth.check("DESCRIBE", url, header, conn).result == "ok"
    clock.advance(600)  # answered in time, so a long session's keepalives need no new nonce
    assert auth.check("DESCRIBE", url, header, conn).result == "ok"
    assert auth.check("DESCRIBE", url, header, ConnectionAuth()).result == "stale"
    wrong = digest(auth.challenges(conn)[0], "DESCRIBE", url, password="guess")
    assert auth.check("DESCRIBE", url, wrong, conn) == ("denied", USER)
    # uri= is part of the hash: changing it breaks the answer. A client may hash just the path.
    assert auth.check("DESCRIBE", url, header.replace(url, "/front-door"), conn).result == "denied"
    path_only = digest(auth.challenges(conn)[0], "DESCRIBE", "/front-door")
    assert auth.check("DESCRIBE", url, path_only, conn).result == "ok"

    # qop=auth: the nonce count must grow, so a header is not replayed in its own connection.
    nonce = re.search(r'nonce="([^"]+)"', auth.challenges(conn)[0]).group(1)  # type: ignore[union-attr]
    realm = auth.realm

    def counted(nc: str) -> str:
        ha1, ha2 = md5(f"{USER}:{realm}:{PASSWORD}"), md5(f"SETUP:{url}")
        response = md5(f"{ha1}:{nonce}:{nc}:abc:auth:{ha2}")
        return (
            f'Digest username="{USER}", realm="{realm}", nonce="{nonce}", uri="{url}", '
            f'qop=auth, nc={nc}, cnonce="abc", response="{response}"'
        )

    assert auth.check("SETUP", url, counted("00000001"), conn).result == "ok"
    assert auth.check("SETUP", url, counted("00000002"), conn).result == "ok"
    assert auth.check("SETUP", url, counted("00000002"), conn).result == "stale"
    assert auth.check("SETUP", url, counted("0000000g"), conn).result == "denied"


# -- finding 6: credentials in any bytes -------------------------------------------------------


async def test_finding_6_non_ascii_credentials_are_401_without_a_traceback(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rig = await make_rig(free_failures=100)  # every attempt here is checked, none locked out
    port = rig.http.port
    not_utf8 = base64.b64encode(b"admin:\xff\xfe").decode().encode()
    for value in [b"Basic \xc3\xa9", b"Basic \xff\xfe", b"\xff\xfe", b"Basic " + not_utf8]:
        request = (
            b"GET /api/secret HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
            + value
            + b"\r\nConnection: close\r\n\r\n"
        )
        status, body = await raw_http(port, request)
        assert status == 401, value
        assert json.loads(body) == {"error": "authentication required"}
    for user, password in [(USER, "\udcff"), ("\udcff", "\ud800x"), ("é", "ü")]:
        assert await rig.login(user, password) == 401

    client = await rig.rtsp_client()
    for value in [b"Basic \xc3\xa9", b'Digest username="\xc3\xa9\xff", realm="\xff"', b"\xff\xfe"]:
        head = f"DESCRIBE {rig.url()} RTSP/1.0\r\nCSeq: 7\r\nAuthorization: ".encode()
        client.writer.write(head + value + b"\r\n\r\n")
        assert (await client.response()).status == 401, value
    assert (await client.request("OPTIONS", rig.url())).status == 200  # the connection lives on
    await close(client)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# -- properties: the parsers take any text -----------------------------------------------------

_TEXT = st.text(max_size=300)
_FIELDS = st.dictionaries(
    st.sampled_from(
        ["username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce", "algorithm", "x"]
    ),
    st.text(max_size=40),
    max_size=10,
)


def _digest_header(fields: dict[str, str], quote: bool) -> str:
    parts = [f'{k}="{v}"' if quote else f"{k}={v}" for k, v in fields.items()]
    return "Digest " + ", ".join(parts)


@settings(max_examples=150, deadline=None)
@given(
    header=st.one_of(
        _TEXT,
        _TEXT.map(lambda t: "Basic " + t),
        _TEXT.map(lambda t: "Digest " + t),
        st.binary(max_size=100).map(lambda b: "Basic " + base64.b64encode(b).decode()),
        st.builds(_digest_header, _FIELDS, st.booleans()),
    ),
    method=st.sampled_from(["DESCRIBE", "SETUP", "PLAY", "\udcff"]),
    url=st.one_of(st.just("rtsp://127.0.0.1/front-door"), _TEXT),
)
def test_authorization_parsers_take_any_text(header: str, method: str, url: str) -> None:
    auth = Authenticator(USER, PASSWORD, "any", clock=lambda: 1_000_000.0)
    verdict = auth.check(method, url, header, ConnectionAuth())
    assert verdict.result in ("ok", "denied", "stale")
    assert verdict.result != "ok"  # nothing random knows the password
    assert verdict.username is None or isinstance(verdict.username, str)
    parsed = parse_basic(header)
    assert parsed is None or all(isinstance(part, str) for part in parsed)
    fields = parse_digest_fields(header.partition(" ")[2])
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())


@settings(max_examples=100, deadline=None)
@given(remote=st.one_of(st.none(), _TEXT), forwarded=st.lists(_TEXT, max_size=4))
def test_client_address_from_any_forwarded_for(remote: str | None, forwarded: list[str]) -> None:
    limiter = AuthLimiter(trusted_proxies=parse_proxies("127.0.0.1, ::1"))
    key = limiter.client(remote, forwarded)
    assert isinstance(key, str)
    assert len(key) <= 64
