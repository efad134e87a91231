"""Cloud archive against the simulated cloud and its video route, on real servers on 127.0.0.1:
real MP4s from libx264, real HTTP Range resumes, a real clip folder and SQLite index."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bridge.commands.clips_sync import ProgressPrinter, format_progress, parse_since
from bridge.record import ClipStore, RecordOptions, Retention, StorageFull
from bridge.record.archive import ArchiveOptions, CloudArchive, SyncReport
from bridge.record.mp4file import probe
from bridge.redact import Secret
from bridge.sim.cloud import API_PREFIX, DEFAULT_API_KEY, SimCloud
from bridge.sim.videos import SimVideos
from bridge.sim.world import SimWorld
from bridge.skybell import SkyBellClient

from .conftest import FakeClock

FRONT = "0579ce92-72a5-4b1f-8191-e360876705c3"
BACK = "be0e3ef1-cf12-4350-bdc2-ce5266bdb838"


@dataclass
class Rig:
    sim: SimCloud
    videos: SimVideos
    clock: FakeClock
    client: SkyBellClient
    http: aiohttp.ClientSession
    store: ClipStore
    archives: list[CloudArchive]

    def archive(self, retention: Retention | None = None, **options: Any) -> CloudArchive:
        options.setdefault("backoff", 0.01)
        options.setdefault("max_backoff", 0.05)
        options.setdefault("chunk_bytes", 16 * 1024)  # several writes per video
        retention = retention or Retention(
            self.store, RecordOptions(min_free_mb=0, reserve_bytes=0)
        )
        archive = CloudArchive(
            self.client,
            self.http,
            self.store,
            retention=retention,
            options=ArchiveOptions(**options),
            clock=self.clock,
        )
        self.archives.append(archive)
        return archive

    def since(self, days: float = 2.0) -> datetime:
        return datetime.fromtimestamp(self.clock() - days * 86400, UTC)

    def activities(self, device_id: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.sim.activities if device_id in (None, a["device_id"])]

    async def served(self, activity_id: str) -> bytes:
        activity = next(a for a in self.sim.activities if a["activity_id"] == activity_id)
        return await self.videos.video(activity)

    def fetches(self, activity_id: str | None = None) -> list[str | None]:
        """The Range header of each video request (for one activity, or all)."""
        return [r for a, r in self.videos.requests if activity_id in (None, a)]


@pytest.fixture
async def rig(
    sim: SimCloud,
    clock: FakeClock,
    tmp_path: Path,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[Rig]:
    videos = SimVideos(sim)
    app = sim.app()
    videos.setup(app)
    server = await aiohttp_server(app)
    store = ClipStore(tmp_path / "clips")
    async with aiohttp.ClientSession() as http:
        client = SkyBellClient(
            http,
            base_url=str(server.make_url(API_PREFIX)),
            api_key=Secret(DEFAULT_API_KEY),
            clock=clock,
        )
        rig = Rig(sim, videos, clock, client, http, store, [])
        yield rig
        for archive in rig.archives:
            await archive.close()
    store.close()


def expected_path(activity: dict[str, Any], folder: str) -> str:
    when = time.localtime(activity["event_time"] / 1000)
    return (
        f"{folder}/{time.strftime('%Y-%m-%d', when)}/"
        f"{time.strftime('%H%M%S', when)}_{activity['event_type']}.mp4"
    )


def leftovers(store: ClipStore) -> list[str]:
    return sorted(p.name for p in store.root.rglob("*.part"))


async def test_sync_downloads_each_video_once_into_the_clip_layout(rig: Rig) -> None:
    archive = rig.archive()
    calls: list[tuple[int, int, int]] = []
    report = await archive.sync(rig.since(), progress=lambda *a: calls.append(a))
    activities = rig.activities()
    assert len(activities) == 8
    assert (report.downloaded, report.skipped, report.failed) == (8, 0, 0)
    assert report.errors == []
    folders = {FRONT: "front-door", BACK: "back-garden"}
    for activity in activities:
        clip = rig.store.index.find(activity_id=activity["activity_id"])
        assert clip is not None
        assert clip.source == "cloud"
        assert clip.state == "done"
        assert clip.device_id == activity["device_id"]
        assert clip.event == activity["event_type"]
        assert clip.start == activity["event_time"] / 1000
        assert clip.path == expected_path(activity, folders[activity["device_id"]])
        data = rig.store.file_of(clip).read_bytes()
        assert data == await rig.served(activity["activity_id"])
        info = probe(rig.store.file_of(clip))
        assert info.duration == pytest.approx(2.0, abs=0.2)
        assert (clip.video_codec, clip.audio_codec) == ("h264", "aac")
        assert (clip.width, clip.height, clip.size) == (320, 240, len(data))
        thumb = rig.store.thumbnail_of(clip)
        assert thumb is not None
        assert thumb.read_bytes()[:2] == b"\xff\xd8"
    assert report.bytes == sum(c.size for c in rig.store.index.all())
    assert calls[0] == (0, 8, 0)
    assert calls[-1] == (8, 8, report.bytes)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert leftovers(rig.store) == []
    assert len(rig.fetches()) == 8

    again = await archive.sync(rig.since())
    assert (again.downloaded, again.skipped, again.failed) == (0, 8, 0)
    assert len(rig.fetches()) == 8  # nothing was asked for again


async def test_sync_filters_by_device_and_skips_what_retention_would_delete(rig: Rig) -> None:
    retention = Retention(
        rig.store, RecordOptions(min_free_mb=0, reserve_bytes=0, max_age_days=0.5)
    )
    report = await rig.archive(retention).sync(rig.since(), device_ids=[FRONT])
    # Front Door's activities are 7, 14, 21 and 28 hours old; half a day keeps the first.
    assert (report.downloaded, report.skipped) == (1, 3)
    assert {c.device_id for c in rig.store.index.all()} == {FRONT}


async def test_transient_failures_are_retried_and_a_broken_body_resumes_with_range(
    rig: Rig,
) -> None:
    archive = rig.archive(read_timeout=0.5, retries=6)
    newest = rig.activities(FRONT)[0]["activity_id"]
    # In the order the sim applies them: an expired URL, 503 twice, a body cut in half, a
    # resumed body that stalls (read timeout), then a 200 that ignores the Range (whole body).
    rig.videos.faults.server_errors = 2
    rig.videos.faults.cut_bodies = 1
    rig.videos.faults.stalls = 1
    rig.videos.faults.ignore_range = 1
    rig.videos.faults.expired = 1
    report = await archive.sync(rig.since(0.5), device_ids=[FRONT])
    assert (report.downloaded, report.failed) == (1, 0)
    ranges = rig.fetches(newest)
    # Data that arrived before a stall is kept: the next request asks only for the rest.
    assert len(ranges) == 6
    assert ranges[:4] == [None, None, None, None]
    resumed = re.fullmatch(r"bytes=(\d+)-", ranges[5] or "")
    assert resumed is not None
    assert int(resumed[1]) > 0
    clip = rig.store.index.find(activity_id=newest)
    assert clip is not None
    assert rig.store.file_of(clip).read_bytes() == await rig.served(newest)
    # The expired URL made the archive ask the cloud for a fresh one.
    url_calls = [c for c in rig.sim.calls if c[1].endswith(f"/activity/{newest}/video")]
    assert len(url_calls) == 2
    assert leftovers(rig.store) == []


async def test_a_broken_download_resumes_in_the_next_process(rig: Rig) -> None:
    newest = rig.activities(FRONT)[0]["activity_id"]
    rig.videos.faults.stalls = 1
    first = await rig.archive(retries=0, read_timeout=0.5).sync(rig.since(0.5), device_ids=[FRONT])
    assert (first.downloaded, first.failed) == (0, 1)
    assert "gave up after 1 attempts" in first.errors[0]
    assert len(leftovers(rig.store)) == 1
    await rig.archives[0].close()
    second = await rig.archive().sync(rig.since(0.5), device_ids=[FRONT])
    assert second.downloaded == 1
    offset = re.fullmatch(r"bytes=(\d+)-", rig.fetches(newest)[-1] or "")
    assert offset is not None
    assert int(offset[1]) > 0
    clip = rig.store.index.find(activity_id=newest)
    assert clip is not None
    assert rig.store.file_of(clip).read_bytes() == await rig.served(newest)
    assert leftovers(rig.store) == []


async def test_a_body_that_is_not_an_mp4_is_rejected_and_not_indexed(rig: Rig) -> None:
    html, garbage, good, _ = (a["activity_id"] for a in rig.activities(FRONT))
    rig.videos.faults.not_mp4 = {html}
    rig.videos.faults.garbage = {garbage}
    archive = rig.archive()
    report = await archive.sync(rig.since(), device_ids=[FRONT])
    assert (report.downloaded, report.failed) == (2, 2)
    assert rig.store.index.find(activity_id=html) is None
    assert rig.store.index.find(activity_id=garbage) is None
    assert rig.store.index.find(activity_id=good) is not None
    errors = "\n".join(report.errors)
    assert f"{html}: got text/html, not a video" in errors
    assert f"{garbage}: not a playable MP4" in errors
    assert len(rig.fetches(html)) == 1  # refused at once, not retried
    assert len(list(rig.store.root.rglob("*.mp4"))) == 2
    assert leftovers(rig.store) == []

    # Remembered: the next sync does not fetch them again; a day later it tries once more.
    again = await archive.sync(rig.since(), device_ids=[FRONT])
    assert (again.downloaded, again.skipped, again.failed) == (0, 4, 0)
    rig.videos.faults.not_mp4 = set()
    rig.clock.advance(86400 + 1)
    later = await archive.sync(rig.since(3), device_ids=[FRONT])
    assert (later.downloaded, later.failed) == (1, 1)
    assert rig.store.index.find(activity_id=html) is not None


async def test_presigned_urls_never_reach_the_logs(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rig.videos.faults.server_errors = 1
    rig.videos.faults.cut_bodies = 1
    rig.videos.faults.expired = 1
    rig.videos.faults.not_mp4 = {rig.activities(BACK)[0]["activity_id"]}
    report = await rig.archive(retries=1).sync(rig.since())
    assert report.failed >= 1
    ours = [r for r in caplog.records if r.name.startswith("bridge.")]
    assert any("retrying" in r.getMessage() for r in ours)
    text = "\n".join([r.getMessage() for r in ours] + report.errors)
    for leak in ("Signature=", "AWSAccessKeyId", "AKIASIMULATED", "/_sim/videos/", "Expires="):
        assert leak not in text


async def test_vready_downloads_that_one_activity(rig: Rig) -> None:
    archive = rig.archive()
    device = rig.sim.devices[BACK]
    rig.clock.advance(60)
    row = rig.sim.add_activity(device, "doorbell")
    task = archive.on_vready(BACK, row["activity_id"])
    assert task is not None
    clip = await task
    assert clip is not None
    assert (clip.source, clip.activity_id, clip.device) == (
        "cloud",
        row["activity_id"],
        "back-garden",
    )
    assert [c.activity_id for c in rig.store.index.all()] == [row["activity_id"]]
    assert rig.fetches() == [None]
    # Twice: the clip already indexed is the answer, nothing is fetched.
    task = archive.on_vready(BACK, row["activity_id"])
    assert task is not None
    assert (await task) == clip
    assert len(rig.fetches()) == 1
    # An unknown activity is logged, not raised.
    task = archive.on_vready(BACK, "no-such-activity")
    assert task is not None
    assert await task is None


async def test_full_storage_refuses_the_download(rig: Rig) -> None:
    full = Retention(rig.store, RecordOptions(min_free_mb=1 << 42, reserve_bytes=0))
    with pytest.raises(StorageFull):
        await rig.archive(full).sync(rig.since())
    assert rig.store.index.all() == []
    assert rig.fetches() == []


async def test_periodic_sync_runs_until_closed(rig: Rig) -> None:
    archive = rig.archive()
    archive.run_periodic(0.05, lookback=2 * 86400)
    archive.run_periodic(0.05)  # already running: no second task
    for _ in range(400):
        if len(rig.store.index.all()) == 8:
            break
        await asyncio.sleep(0.05)
    assert len(rig.store.index.all()) == 8
    rig.sim.add_activity(rig.sim.devices[FRONT], "motion")
    for _ in range(400):
        if len(rig.store.index.all()) == 9:
            break
        await asyncio.sleep(0.05)
    assert len(rig.store.index.all()) == 9
    await archive.close()
    await archive.close()
    assert archive.on_vready(FRONT, "x") is None
    assert len(rig.fetches()) == 9


async def test_close_leaves_no_background_task_running(rig: Rig) -> None:
    archive = rig.archive()
    archive.run_periodic(3600, lookback=2 * 86400)
    vready = archive.on_vready(FRONT, rig.activities(FRONT)[0]["activity_id"])
    assert vready is not None
    await asyncio.sleep(0)  # both started
    await archive.close()
    assert vready.done()
    running = [t.get_name() for t in asyncio.all_tasks() if not t.done()]
    assert [n for n in running if n.startswith("archive ")] == []


def test_parse_since() -> None:
    now = datetime(2026, 5, 28, 12, 0, tzinfo=UTC)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since(" 1.5 H ", now) == now - timedelta(minutes=90)
    assert parse_since("1w", now) == now - timedelta(days=7)
    assert parse_since("2026-05-01T10:00:00Z") == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert parse_since("2026-05-01T10:00:00+02:00") == datetime(2026, 5, 1, 8, tzinfo=UTC)
    local = parse_since("2026-05-01")
    assert local.tzinfo == UTC
    assert local == datetime(2026, 5, 1).astimezone(UTC)
    for bad in ("", "2 days", "yesterday", "-1d", "2026-13-01"):
        with pytest.raises(ValueError, match="expected a span"):
            parse_since(bad, now)


def test_progress_line_and_printer() -> None:
    assert format_progress(0, 8, 0, 0.0) == "[------------------------] 0/8 clips  0 B"
    line = format_progress(3, 8, 3 * 1024 * 1024, 2.0, width=8)
    assert line == "[###-----] 3/8 clips  3.0 MB  1.5 MB/s"
    assert format_progress(0, 0, 0, 1.0, width=4) == "[####] 0/0 clips  0 B"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = FakeClock(0.0)
    tty = Tty()
    printer = ProgressPrinter(tty, clock=clock)
    printer(0, 2, 0)
    printer(0, 2, 10)  # too soon to redraw
    clock.advance(1.0)
    printer(0, 2, 2048)
    printer(1, 2, 4096)  # a finished clip always redraws
    printer.finish()
    frames = tty.getvalue().split("\r")[1:]
    assert len(frames) == 4
    assert frames[1].startswith("[------------------------] 0/2 clips  2.0 KB")
    assert frames[-1].endswith("\n")
    assert "1/2 clips  4.0 KB" in frames[-1]

    pipe = io.StringIO()
    printer = ProgressPrinter(pipe, clock=clock)
    for step in ((0, 2, 0), (0, 2, 100), (1, 2, 200), (2, 2, 300)):
        printer(*step)
    printer.finish()
    lines = pipe.getvalue().splitlines()
    assert "\r" not in pipe.getvalue()
    assert [line.split("]")[1].split("clips")[0].strip() for line in lines] == ["1/2", "2/2", "2/2"]


def test_sync_report_defaults() -> None:
    assert SyncReport() == SyncReport(0, 0, 0, 0, [], [])


async def test_the_simulated_world_serves_activity_videos(
    clock: FakeClock, tmp_path: Path, aiohttp_server: Callable[..., Awaitable[TestServer]]
) -> None:
    world = SimWorld(SimCloud(clock=clock))
    server = await aiohttp_server(world.app())
    world.bind(str(server.make_url("")))
    store = ClipStore(tmp_path / "clips")
    try:
        async with aiohttp.ClientSession() as http:
            client = SkyBellClient(
                http, base_url=str(server.make_url(API_PREFIX)), api_key=Secret(DEFAULT_API_KEY)
            )
            archive = CloudArchive(
                client,
                http,
                store,
                retention=Retention(store, RecordOptions(min_free_mb=0, reserve_bytes=0)),
                clock=clock,
            )
            newest = world.cloud.activities[0]
            clip = await archive.download_activity(newest["activity_id"])
            await archive.close()
        assert clip.source == "cloud"
        assert store.file_of(clip).read_bytes() == await world.videos.video(newest)
        assert world.videos.requests == [(newest["activity_id"], None)]
    finally:
        store.close()
        await world.close()
