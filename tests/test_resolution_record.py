"""A clip recorded across mid-stream resolution changes: one clip, decodable throughout by
ffmpeg, PyAV and Chromium's <video> (see ``bridge.record.writer`` for why one clip)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.media.hub import Hub, Stream
from bridge.record import Clip, ClipStore, Recorder, RecordOptions

from .fake_doorbell import run
from .resolution_util import BIG, SMALL, ChangingConnector, changing_stream
from .test_resolution_change import _DECODE_ERRORS, BOTH
from .web_util import (  # noqa: F401 - browser_fixture is a fixture
    browser_fixture,
    new_page,
    until,
)


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[Clip, Path]]:
    hub, stream = changing_stream(ChangingConnector(sparse=True))
    store = ClipStore(tmp_path / "clips")
    recorder = Recorder(hub, store, RecordOptions(min_free_mb=0, reserve_bytes=0))
    await recorder.start()
    try:
        clip = await _record(recorder, hub, stream)
        yield clip, store.file_of(clip)
    finally:
        await recorder.close()
        await hub.close()


async def _record(recorder: Recorder, hub: Hub, stream: Stream) -> Clip:
    viewer = stream.subscribe("viewer")
    try:
        await stream.wait_keyframe(10)
        await recorder.start_manual(stream)
        await asyncio.sleep(3.6)  # more than a whole 3 s cycle: two changes at least
        clip = await recorder.stop(stream)
    finally:
        viewer.close()
    assert clip is not None
    assert clip.state == "done", clip
    return clip


def _sizes(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        return [(f.width, f.height) for f in container.decode(video=0)]


@pytest.mark.slow
async def test_a_clip_across_changes_decodes_at_both_sizes(recorded: tuple[Clip, Path]) -> None:
    clip, path = recorded
    sizes = await asyncio.to_thread(_sizes, path)
    assert set(sizes) == BOTH
    assert sum(a != b for a, b in itertools.pairwise(sizes)) >= 2
    assert abs(len(sizes) / 15 - clip.duration) < 0.3, "every frame is there"
    code, _, err = await run("ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-")
    assert code == 0, err
    assert err == "", err
    code, out, err = await run(
        "ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=width,height",
        "-of", "csv=p=0", str(path),
    )  # fmt: skip
    assert code == 0, err
    probed = {tuple(int(x) for x in line.split(",")[:2]) for line in out.split() if "," in line}
    assert probed == BOTH
    assert not _DECODE_ERRORS.search(err)


_PAGE = """<!doctype html><html><head><link rel="icon" href="data:,"></head><body>
<video id="v" muted playsinline src="/clip.mp4"></video><script>
const v = document.getElementById('v');
window.sizes = [];
const frame = (now, meta) => { const last = window.sizes[window.sizes.length - 1];
  if (!last || last[0] !== meta.width || last[1] !== meta.height) window.sizes.push([meta.width, meta.height]);
  v.requestVideoFrameCallback(frame); };
v.requestVideoFrameCallback(frame);
v.play();
</script></body></html>"""


@pytest.mark.slow
async def test_chromium_plays_the_clip_through_the_changes(
    recorded: tuple[Clip, Path],
    browser: Any,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> None:
    _, path = recorded
    app = web.Application()

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html")

    async def clip(_: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={"Content-Type": "video/mp4"})

    app.router.add_get("/", page)
    app.router.add_get("/clip.mp4", clip)
    server = await aiohttp_server(app)
    tab, watch = await new_page(browser)
    await tab.goto(str(server.make_url("/")))
    await until(lambda: tab.evaluate("document.getElementById('v').ended"), 30, step=0.2)
    state = await tab.evaluate(
        "() => { const v = document.getElementById('v'); return {error: v.error && "
        "v.error.message, frames: v.getVideoPlaybackQuality().totalVideoFrames, "
        "dropped: v.getVideoPlaybackQuality().droppedVideoFrames, sizes: window.sizes}; }"
    )
    assert state["error"] is None
    sizes = [tuple(s) for s in state["sizes"]]
    assert set(sizes) == {BIG, SMALL}, state
    assert len(sizes) >= 3, state
    assert state["frames"] >= 45, state
    assert watch.errors == []


def _decode_from_each_keyframe(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(size shown after seeking to a keyframe, its size played in order), per keyframe. A
    seek is a fresh decoder with the file's avcC, fed from that keyframe on."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        extradata = stream.codec_context.extradata
        packets = [(bytes(p), p.is_keyframe) for p in container.demux(stream) if p.size]
    in_order = av.CodecContext.create("h264", "r")
    in_order.extradata = extradata
    played = []  # no B-frames: frame i is packet i
    for data, _ in packets:
        played += [(f.width, f.height) for f in in_order.decode(av.Packet(data))]
    out = []
    for i, (_, key) in enumerate(packets):
        if not key:
            continue
        codec = av.CodecContext.create("h264", "r")
        codec.extradata = extradata
        frames = []
        for data, _ in packets[i : i + 3]:
            frames += codec.decode(av.Packet(data))
        out.append(((frames[0].width, frames[0].height), played[i]))
    return out


@pytest.mark.slow
async def test_seeking_to_any_keyframe_of_the_clip_decodes(recorded: tuple[Clip, Path]) -> None:
    # The doorbell sends parameter sets only with the first IDR of each size (sparse): the
    # writer puts them in front of the others, or a seek past a change would decode garbage.
    _, path = recorded
    seeks = await asyncio.to_thread(_decode_from_each_keyframe, path)
    assert len(seeks) >= 6
    assert {played for _, played in seeks} == BOTH
    assert all(seen == played for seen, played in seeks), seeks
