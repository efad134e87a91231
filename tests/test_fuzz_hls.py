"""Fuzzing the LL-HLS query parameters and media URLs (issue 12): ``_HLS_msn``, ``_HLS_part``,
``_HLS_skip``, ``ll``, ``src`` and the numbers in segment and part URLs give a playlist, media,
or a 4xx/503 with a one-line JSON reason, never a 500, and a held request ends in bounded time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.hls import BadRequest, HlsOptions, Segmenter, parse_blocking
from bridge.hls.playlist import check_blocking, reached
from bridge.routes import hls

from .app_util import make_app
from .fake_doorbell import Connector, make_stream, noisy_video
from .hls_util import timed_packets

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Numbers as clients and attackers write them.
_numbers = st.one_of(
    st.integers(-5, 40).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(
        ["", " 1", "1 ", "+1", "1_0", "0x1", "1.5", "1e3", "²", "٣", "NaN", "9" * 5000]
    ),
    st.text(max_size=12),
)
_queries = st.fixed_dictionaries(
    {},
    optional={
        "_HLS_msn": _numbers,
        "_HLS_part": _numbers,
        "_HLS_skip": st.sampled_from(["YES", "v2", "NO", ""]) | st.text(max_size=8),
        "ll": st.sampled_from(["0", "1", "false", "no", "OFF", ""]) | st.text(max_size=8),
    },
)


@FUZZ
@given(_queries)
def test_fuzz_blocking_parameters_parse_to_numbers_or_bad_request(query: dict[str, str]) -> None:
    try:
        block = parse_blocking(query)
    except BadRequest as err:
        reason = str(err)
    else:
        reason = ""
    if reason:
        return  # a 400 with this one-line reason
    if block is None:
        assert "_HLS_msn" not in query
        return
    msn, part = block
    assert msn >= 0
    assert part is None or part >= 0


_segmenter: Segmenter | None = None


def _live_segmenter() -> Segmenter:
    """A segmenter holding a few seconds of real media (built once: encoding is the slow part)."""
    global _segmenter
    if _segmenter is None:
        _segmenter = Segmenter(segment_target=1.0, part_target=0.25, window=4)
        for packet in timed_packets(6, noisy_video()):
            _segmenter.feed(packet)
    return _segmenter


@FUZZ
@given(st.integers(0, 10**30), st.none() | st.integers(0, 10**30))
def test_fuzz_blocking_rules_on_a_live_segmenter(msn: int, part: int | None) -> None:
    seg = _live_segmenter()
    try:
        check_blocking(seg, msn, part)
    except BadRequest as err:
        reason = str(err)
    else:
        reason = ""
    if reason:
        assert "too far ahead" in reason
        assert msn >= seg.next_part[0]  # never refuses what exists already
        return
    reached(seg, msn, part)  # must not raise
    assert msn <= seg.next_part[0] + 1


# -- through HTTP -------------------------------------------------------------------------------

_printable = st.characters(blacklist_categories=("Cs",))
_paths = st.one_of(
    st.just("/api/hls/live.m3u8"),
    st.just("/api/stream.m3u8"),
    st.tuples(st.sampled_from(["seg-{}.m4s", "init-{}.mp4", "part-{}.{}.m4s"]), _numbers, _numbers)
    .map(lambda t: (t[0], re.sub(r"[^0-9]", "", t[1])[:12], re.sub(r"[^0-9]", "", t[2])[:12]))
    .map(lambda t: "@/" + t[0].format(t[1] or "0", t[2] or "0")),
    st.text(_printable, max_size=20).map(lambda t: "/api/hls/" + t.replace("?", "")),
)
_srcs = st.one_of(st.just("front-door"), st.just("dev-1"), st.text(_printable, max_size=12))
_ALLOWED = {200, 400, 404, 503}


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _session_id(http: aiohttp.ClientSession, server: TestServer) -> str:
    """The packager's session id from a real playlist (waiting for the first segment)."""
    url = server.make_url("/api/hls/live.m3u8").with_query(src="front-door")
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        assert resp.status == 200, await resp.text()
        match = re.search(r"^([0-9a-f]+)/seg-\d+\.m4s", await resp.text(), re.MULTILINE)
    assert match is not None
    return match[1]


async def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


def test_fuzz_hls_query_parameters_and_media_urls_through_http() -> None:
    loop = asyncio.new_event_loop()
    errors = _Errors()
    for name in ("aiohttp", "bridge"):
        logging.getLogger(name).addHandler(errors)
    try:
        hub, _stream = make_stream(Connector())
        app = make_app(
            hub, lambda app: hls.setup(app, HlsOptions(segment_target=1.0, part_target=0.25))
        )
        server = TestServer(app)
        loop.run_until_complete(server.start_server())
        http = loop.run_until_complete(_client())
        session_id = loop.run_until_complete(_session_id(http, server))

        async def get(path: str, query: dict[str, str]) -> tuple[int, str, bytes]:
            url = server.make_url(path.replace("@", f"/api/hls/{session_id}")).update_query(query)
            # Held requests end within three target durations (3 s here), whatever was asked.
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=15)) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

        @settings(FUZZ, max_examples=80)
        @given(_paths, _queries, _srcs)
        def request(path: str, query: dict[str, str], src: str) -> None:
            status, content_type, body = loop.run_until_complete(get(path, {"src": src, **query}))
            assert status in _ALLOWED, (status, body[:200])
            if status != 200 and content_type.startswith("application/json"):
                reason: Any = json.loads(body)["error"]
                assert isinstance(reason, str)
                assert "\n" not in reason
            assert not errors.messages, errors.messages

        try:
            request()
        finally:
            loop.run_until_complete(http.close())
            loop.run_until_complete(server.close())
            loop.run_until_complete(hub.close())
    finally:
        for name in ("aiohttp", "bridge"):
            logging.getLogger(name).removeHandler(errors)
        loop.close()
