"""The recorder against the fake doorbell: real H.264, real MP4 files, real SQLite.

The doorbell, the hub and the recorder run on a virtual clock (tests/virtual_clock.py): the
seconds of pre- and post-roll pass in milliseconds, in the same order every run, while the
files, threads and SQLite are real. The full 5 s pre-roll on real time is checked end to end
in test_record_live.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import pytest

from bridge.media.hub import Hub, LiveCall, Stream
from bridge.media.mp4 import Mp4Writer
from bridge.media.packet import MediaPacket, extract_sps_pps, iter_nal_units
from bridge.options import GIB
from bridge.record import (
    ActiveClip,
    Clip,
    ClipBusy,
    ClipPage,
    ClipStore,
    DeviceRecordOptions,
    PathOutsideStore,
    Recorder,
    RecordError,
    RecordOptions,
    StorageFull,
)

from .fake_doorbell import (
    FPS,
    HEIGHT,
    WIDTH,
    CloudLiveCall,
    Connector,
    make_stream,
    noisy_video,
    probe,
)
from .virtual_clock import VirtualClock

REPO = Path(__file__).resolve().parent.parent
FRAME = 1 / FPS


@dataclass
class Rig:
    hub: Hub
    stream: Stream
    connector: Connector
    store: ClipStore
    root: Path
    clock: VirtualClock
    recorders: list[Recorder] = field(default_factory=list)

    def recorder(self, **options: Any) -> Recorder:
        options.setdefault("min_free_mb", 0)
        options.setdefault("reserve_bytes", 0)
        rec = Recorder(self.hub, self.store, RecordOptions(**options), clock=self.clock)
        self.recorders.append(rec)
        return rec

    async def live_for(self, seconds: float) -> Any:
        """A viewer keeps the stream live; returns its subscriber once ``seconds`` have run."""
        viewer = self.stream.subscribe("viewer")
        await self.clock.advance(seconds)
        return viewer

    async def finish(self, rec: Recorder, job: ActiveClip, limit: float = 60.0) -> Clip | None:
        """The clip's row once it ends: time runs until it stops taking packets, and stops
        there (what comes next must not see later time) while its file is closed."""
        await self.clock.run_until(lambda: job not in rec.active(), limit=limit)
        return await job.wait()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = VirtualClock()
    connector = Connector(clock=clock)
    hub, stream = make_stream(connector)
    store = ClipStore(tmp_path / "clips")
    made = Rig(hub, stream, connector, store, tmp_path / "clips", clock)
    yield made
    for rec in made.recorders:
        await rec.close()
        await rec.close()  # idempotent
    await hub.close()
    store.close()
    store.close()


def frames_of(path: Path) -> list[av.VideoFrame]:
    """Every decoded video frame; raises on any broken one."""
    with av.open(str(path)) as container:
        return list(container.decode(container.streams.video[0]))


def fake_clip(store: ClipStore, device: str, start: float, size: int, **extra: Any) -> Clip:
    """A finished clip row with a file of ``size`` bytes (retention only looks at sizes)."""
    event = extra.pop("event", "motion")
    rel = store.new_clip_path(device, start, event)
    path = store.resolve(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    store.release(rel)
    return store.index.add(
        Clip(
            device_id=f"id-{device}",
            device=device,
            event=event,
            start=start,
            path=rel,
            size=size,
            **extra,
        )
    )


async def wait_for_row(clock: VirtualClock, job: ActiveClip) -> Clip:
    """The clip's index row, once its first keyframe has been written."""
    with contextlib.suppress(TimeoutError):
        await clock.run_until(lambda: job.clip is not None, limit=10.0)
    if job.clip is None:
        raise AssertionError("the clip never started")
    return job.clip


# -- clips from events ---------------------------------------------------------------------------


async def test_event_clip_has_preroll_postroll_and_thumbnail(rig: Rig) -> None:
    rec = rig.recorder(preroll=1.5, postroll=1.0)
    assert await rec.start() == []
    viewer = await rig.live_for(2.8)
    triggered = rig.clock.wall()
    job = await rec.trigger("front-door", "motion", activity_id="act-1")
    assert job is not None
    clip = await rig.finish(rec, job)
    viewer.close()
    assert clip is not None
    assert clip.state == "done", clip
    # The ring hands whole GOPs (1 s here), so the clip reaches back at least the pre-roll.
    assert clip.preroll >= 1.5
    assert clip.start <= triggered - 1.5 + 0.05
    assert clip.preroll + 1.0 - 0.2 <= clip.duration <= clip.preroll + 1.0 + 0.5
    assert (clip.device, clip.device_id, clip.event) == ("front-door", "dev-1", "motion")
    assert (clip.source, clip.activity_id, clip.uploaded) == ("live", "act-1", "no")
    assert clip.path.startswith("front-door/")
    assert clip.path.endswith("_motion.mp4")
    path = rig.store.file_of(clip)
    assert path.exists()
    assert not path.with_name(path.name + ".part").exists()
    frames = frames_of(path)
    assert frames[0].key_frame
    assert abs(len(frames) * FRAME - clip.duration) < 0.15
    info = await probe(str(path))
    kinds = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    assert kinds == {"video": "h264", "audio": "aac"}
    assert (clip.width, clip.height, clip.size) == (WIDTH, HEIGHT, path.stat().st_size)
    # The thumbnail is a real JPEG of the first frame.
    thumb = rig.store.thumbnail_of(clip)
    assert thumb is not None
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
    with av.open(str(thumb)) as container:
        picture = next(container.decode(video=0))
        assert container.streams.video[0].codec_context.name == "mjpeg"
        assert (picture.width, picture.height) == (WIDTH, HEIGHT)
    assert await rig.store.get(clip.id) == clip


async def test_second_event_extends_the_clip_and_clips_never_overlap(rig: Rig) -> None:
    rec = rig.recorder(preroll=1.0, postroll=0.8)
    await rec.start()
    viewer = await rig.live_for(1.5)
    first = await rec.trigger("front-door", "motion")
    await rig.clock.advance(0.7)
    again = await rec.trigger(rig.stream, "doorbell")
    assert again is first
    assert first is not None
    assert first.events == 2
    one = await rig.finish(rec, first)
    assert one is not None
    assert one.duration >= one.preroll + 0.7 + 0.8 - 0.15
    assert one.event == "motion"
    # Right after it: the new clip wants 1 s of pre-roll but must start after the first ends.
    second = await rec.trigger("front-door", "doorbell")
    assert second is not None
    assert second is not first
    two = await rig.finish(rec, second)
    viewer.close()
    assert two is not None
    assert two.path != one.path
    assert one.end is not None
    assert two.start >= one.end - FRAME
    assert two.preroll < 1.0
    page = await rig.store.query(device="front-door")
    assert [c.id for c in page.clips] == [two.id, one.id]


async def test_cold_stream_records_from_first_keyframe(rig: Rig) -> None:
    rec = rig.recorder(preroll=5.0, postroll=1.0)
    await rec.start()
    assert rig.stream.state == "idle"
    stopped = await rec.trigger("front-door", "doorbell")
    assert stopped is not None
    assert await rec.stop("front-door") is None  # stopped before any picture: no clip
    assert await rig.store.query() == ClipPage([], None)
    job = await rec.trigger("dev-1", "doorbell")  # by device id
    assert job is not None
    clip = await rig.finish(rec, job)
    assert clip is not None
    assert clip.state == "done"
    # Nothing was buffered (the first trigger only just woke the stream): no pre-roll to speak
    # of, and the index says so.
    assert clip.preroll < 0.1
    assert clip.duration >= 1.0 - FRAME
    assert frames_of(rig.store.file_of(clip))[0].key_frame


class BareKeyframes(CloudLiveCall):
    """Sends SPS/PPS with the first keyframe only, as many cameras do."""

    async def packets(self) -> AsyncIterator[MediaPacket]:
        first = True
        async for packet in super().packets():
            if packet.kind == "video" and packet.keyframe and not first:
                nals = [n for n in iter_nal_units(packet.data) if n[0] & 0x1F not in (7, 8)]
                packet = dataclasses.replace(packet, data=b"".join(b"\0\0\0\1" + n for n in nals))
            first = first and not packet.keyframe
            yield packet


async def test_keyframe_without_parameter_sets_still_starts_a_playable_clip(rig: Rig) -> None:
    async def connect() -> LiveCall:
        return BareKeyframes(clock=rig.clock)

    stream = rig.hub.add("dev-2", "side-door", connect)
    rec = rig.recorder(preroll=0.0, postroll=0.5)
    with stream.subscribe("viewer"):
        await rig.clock.advance(1.5)  # past the first GOP: the cached one has no SPS/PPS
        assert extract_sps_pps(stream.preroll(0.0)[0].data) == (None, None)
        job = await rec.trigger("side-door", "doorbell")
        assert job is not None
        clip = await rig.finish(rec, job)
    assert clip is not None
    frames = frames_of(rig.store.file_of(clip))
    assert frames[0].key_frame
    assert len(frames) >= 8


async def test_manual_recording_and_motion_switch(rig: Rig) -> None:
    rec = rig.recorder(
        preroll=0.5,
        postroll=0.3,
        record_motion=False,
        devices={"front-door": DeviceRecordOptions(max_length=30.0)},
    )
    await rec.start()
    viewer = await rig.live_for(1.0)
    assert await rec.trigger("front-door", "motion") is None  # motion is not recorded
    job = await rec.start_manual("front-door")
    await rig.clock.advance(1.2)  # longer than any post-roll: a manual clip waits for stop()
    assert rec.active() == [job]
    assert job.as_dict()["manual"] is True
    with pytest.raises(ClipBusy):
        await rig.store.delete(job.clip.id if job.clip else 0)
    clip = await rec.stop("front-door")
    viewer.close()
    assert clip is not None
    assert clip.event == "manual"
    assert clip.duration >= 1.2
    assert rec.active() == []
    assert await rec.stop("front-door") is None
    deleted = await rig.store.delete(clip.id)
    assert deleted == clip
    assert not rig.store.file_of(clip).exists()
    assert await rig.store.get(clip.id) is None


async def test_keep_warm_gives_preroll_without_viewers(rig: Rig) -> None:
    rec = rig.recorder(preroll=1.0, postroll=0.3, keep_warm=True)
    await rec.start()
    await rig.clock.advance(2.2)
    assert rig.stream.state == "live"
    assert not rig.stream.subscribers
    job = await rec.trigger("front-door", "doorbell")
    assert job is not None
    clip = await rig.finish(rec, job)
    assert clip is not None
    assert clip.preroll >= 1.0


# -- crash safety --------------------------------------------------------------------------------

RECORD_FOREVER = """
import asyncio, sys
from bridge.record import ClipStore, Recorder, RecordOptions
from tests.fake_doorbell import Connector, make_stream
from tests.virtual_clock import VirtualClock

async def main():
    clock = VirtualClock()
    hub, stream = make_stream(Connector(clock=clock))
    store = ClipStore(sys.argv[1])
    options = RecordOptions(preroll=0.5, postroll=60.0, min_free_mb=0, reserve_bytes=0)
    rec = Recorder(hub, store, options, clock=clock)
    await rec.start()
    viewer = stream.subscribe("viewer")
    await clock.advance(1.0)
    await rec.trigger("front-door", "doorbell")
    # 4.5 s of video handed to the writer, which writes it out in real time meanwhile; the
    # clip runs on (60 s of post-roll on a clock that now stands still) until the kill.
    await clock.advance(4.5)
    print("recording", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_kill_9_mid_clip_leaves_a_clip_that_recover_indexes(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RECORD_FOREVER, str(root), cwd=REPO, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"recording\n"
        parts: list[Path] = []
        for _ in range(200):  # until about 3 s are on disk
            parts = list(root.rglob("*.mp4.part"))
            if parts and parts[0].stat().st_size > 150_000:
                break
            await asyncio.sleep(0.05)
        assert parts, "the recorder wrote no .part file"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = ClipStore(root)
    try:
        [row] = store.index.all()
        assert row.state == "recording"
        [clip] = await store.recover()
        assert clip.id == row.id
        assert clip.state == "done"
        assert "recovered" in clip.note
        path = store.file_of(clip)
        assert path.exists()
        assert not list(root.rglob("*.part"))
        frames = frames_of(path)  # decodes to the end without an error
        assert len(frames) >= 2 * FPS
        assert frames[0].key_frame
        assert abs(clip.duration - len(frames) * FRAME) < 0.15
        code_info = await probe(str(path), "-count_frames")
        assert int(code_info["streams"][0]["nb_read_frames"]) == len(frames)
        assert store.thumbnail_of(clip) is not None
        assert await store.recover() == []  # nothing left to do
    finally:
        store.close()


FILL_LIMITED_DISK = """
import asyncio, json, resource, signal, sys
from bridge.record import ClipStore, Recorder, RecordOptions
from tests.fake_doorbell import Connector, make_stream
from tests.virtual_clock import VirtualClock

async def main():
    clock = VirtualClock()
    hub, stream = make_stream(Connector(clock=clock))
    store = ClipStore(sys.argv[1])
    # Any file past 120 kB fails with EFBIG, as a full disk fails with ENOSPC.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (120_000, 120_000))
    options = RecordOptions(preroll=0.0, postroll=30.0, min_free_mb=0, reserve_bytes=0)
    rec = Recorder(hub, store, options, clock=clock)
    job = await rec.trigger("front-door", "doorbell")
    await clock.run_until(lambda: not rec.active(), limit=20)  # time stops as the clip ends
    clip = await asyncio.wait_for(job.wait(), 20)
    print(json.dumps({"clip": clip.as_dict(), "live": stream.state}), flush=True)
    await rec.close()
    await hub.close()

asyncio.run(main())
"""


async def test_write_error_closes_the_clip_as_far_as_it_got(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FILL_LIMITED_DISK, str(root), cwd=REPO, stdout=pipe, stderr=pipe
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    clip = result["clip"]
    assert result["live"] == "live"  # the stream was not hurt
    assert clip["state"] == "done"
    assert "write error" in clip["note"]
    assert 0 < clip["size"] <= 120_000
    frames = frames_of(root / clip["path"])
    assert len(frames) >= FPS  # over a second survived, cut at a whole fragment
    assert b"File too large" in err or b"write failed" in err


# -- storage limits ------------------------------------------------------------------------------


async def test_full_disk_refuses_recording_and_the_stream_keeps_serving(rig: Rig) -> None:
    old = fake_clip(rig.store, "front-door", time.time() - 3600, 5000)
    rec = rig.recorder(preroll=0.5, postroll=0.5, min_free_mb=10**18 >> 20)
    await rec.start()
    with pytest.raises(StorageFull):
        await rec.trigger("front-door", "doorbell")
    assert rig.connector.made == []  # a refused clip does not wake an idle doorbell
    viewer = await rig.live_for(0.5)
    with pytest.raises(StorageFull, match="bytes free") as refused:
        await rec.trigger("front-door", "doorbell")
    assert isinstance(refused.value, RecordError)
    assert rec.active() == []
    assert await rig.store.get(old.id) == old  # deleting it could not have helped: kept
    # The hub keeps serving the other subscriber.
    before = viewer.delivered
    await rig.clock.advance(0.5)
    while viewer.get_nowait() is not None:
        pass
    assert viewer.delivered > before + 5
    assert rig.stream.state == "live"
    viewer.close()

    small = rig.recorder(max_total_gb=1000 / GIB, reserve_bytes=32 << 20)
    with pytest.raises(StorageFull, match="the limit is 1000"):
        await small.trigger("front-door", "doorbell")


async def test_size_limit_reached_while_recording_ends_the_clip(rig: Rig) -> None:
    rec = rig.recorder(
        preroll=0.0, postroll=20.0, max_total_gb=100_000 / GIB, space_check_interval=0.2
    )
    await rec.start()
    job = await rec.trigger("front-door", "doorbell")
    assert job is not None
    clip = await rig.finish(rec, job, limit=15)
    assert clip is not None
    assert clip.state == "done"
    assert "storage full" in clip.note
    assert clip.duration < 5.0
    assert len(frames_of(rig.store.file_of(clip))) >= FPS


async def test_retention_by_age_per_device_and_overall(rig: Rig) -> None:
    now = time.time()
    day = 86400
    a_old = fake_clip(rig.store, "front", now - 10 * day, 100)
    b_mid = fake_clip(rig.store, "back", now - 2 * day, 100)
    a_new = fake_clip(rig.store, "front", now - 60, 100)
    rec = rig.recorder(max_age_days=5, devices={"back": DeviceRecordOptions(max_age_days=1)})
    deleted = await asyncio.to_thread(rec.retention.run)
    assert {c.id for c in deleted} == {a_old.id, b_mid.id}
    assert not rig.store.file_of(a_old).exists()
    assert [c.id for c in rig.store.index.all()] == [a_new.id]


async def test_retention_by_size_never_touches_the_clip_being_written(rig: Rig) -> None:
    now = time.time()
    clips = [fake_clip(rig.store, "front-door", now - 500 + i, 1000) for i in range(4)]
    back = fake_clip(rig.store, "back", now - 600, 1000)
    per_device = rig.recorder(devices={"front-door": DeviceRecordOptions(max_gb=2500 / GIB)})
    gone = await asyncio.to_thread(per_device.retention.run)
    assert [c.id for c in gone] == [clips[0].id, clips[1].id]  # oldest first
    total = rig.recorder(max_total_gb=2000 / GIB)
    gone = await asyncio.to_thread(total.retention.run)
    assert [c.id for c in gone] == [back.id]  # the oldest left, whichever device
    assert rig.store.usage() == 2000

    # A clip being written survives any limit, and still finishes.
    rec = rig.recorder(preroll=0.0, postroll=1.5)
    job = await rec.trigger("front-door", "doorbell")
    assert job is not None
    await wait_for_row(rig.clock, job)
    tiny = rig.recorder(max_total_gb=1 / GIB)
    gone = await asyncio.to_thread(tiny.retention.run)
    assert {c.id for c in gone} == {clips[2].id, clips[3].id}
    assert [c.state for c in rig.store.index.all()] == ["recording"]
    clip = await rig.finish(rec, job)
    assert clip is not None
    assert clip.state == "done"
    assert rig.store.file_of(clip).exists()


# -- index, folder, paths ------------------------------------------------------------------------


async def test_reindex_rebuilds_from_the_folder(rig: Rig, tmp_path: Path) -> None:
    rec = rig.recorder(preroll=0.0, postroll=1.0)
    job = await rec.trigger("front-door", "doorbell", activity_id="act-9")
    assert job is not None
    recorded = await rig.finish(rec, job)
    assert recorded is not None
    await rec.close()
    # A clip from elsewhere, without our tags, placed by the layout.
    foreign = rig.root / "side-gate" / "2026-01-02" / "030405_motion.mp4"
    writer = Mp4Writer(foreign, audio=False)
    for packet in noisy_video():
        writer.write(packet)
    writer.close()
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(foreign.read_bytes())
    (rig.root / "front-door" / "link.mp4").symlink_to(outside)  # never followed
    rig.store.close()
    for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
        (rig.root / name).unlink(missing_ok=True)

    store = rig.store = ClipStore(rig.root)
    counts = await store.reindex()
    assert counts == {"added": 2, "updated": 0, "removed": 0, "unreadable": 0}
    again = store.index.find(path=recorded.path)
    assert again is not None
    for name in ("device_id", "device", "event", "preroll", "activity_id", "duration", "size"):
        assert getattr(again, name) == getattr(recorded, name), name
    assert abs(again.start - recorded.start) < 0.001
    other = store.index.find(path="side-gate/2026-01-02/030405_motion.mp4")
    assert other is not None
    assert other.state == "done"
    assert (other.device, other.event, other.audio_codec) == ("side-gate", "motion", "")
    assert time.localtime(other.start)[:6] == (2026, 1, 2, 3, 4, 5)
    assert other.thumbnail is not None
    assert store.resolve(other.thumbnail).exists()
    foreign.unlink()
    assert (await store.reindex())["removed"] == 1
    assert (await store.reindex())["updated"] == 1


async def test_paths_never_leave_the_clips_folder(rig: Rig, tmp_path: Path) -> None:
    store = rig.store
    for bad in ("../x.mp4", "/etc/passwd", "a/../../x", "front-door/../../etc/hosts", "", "."):
        with pytest.raises(PathOutsideStore):
            store.resolve(bad)
    rel = store.new_clip_path("../../etc", time.time(), "../../../passwd")
    assert store.resolve(rel).is_relative_to(rig.root)
    assert ".." not in rel
    assert rel.startswith("etc/")
    # An index row that points outside (a bug or a tampered file) cannot delete anything.
    victim = tmp_path / "victim.mp4"
    victim.write_bytes(b"keep me")
    row = store.index.add(
        Clip(device_id="x", device="x", event="e", start=1.0, path="../victim.mp4")
    )
    with pytest.raises(PathOutsideStore):
        await store.delete(row.id)
    assert victim.read_bytes() == b"keep me"
    assert await store.delete(999) is None


async def test_query_filters_and_pages(rig: Rig) -> None:
    store = rig.store
    base = 1_780_000_000.0
    for i in range(6):
        fake_clip(store, "front" if i % 2 else "back", base + i * 60, 10, event=f"e{i % 3}")
    fake_clip(store, "back", base + 360, 10, event="e0", source="cloud", activity_id="a6")
    page = await store.query(limit=3)
    assert [c.start for c in page.clips] == [base + 360, base + 300, base + 240]
    seen = [c.id for c in page.clips]
    while page.next_cursor:
        page = await store.query(limit=3, cursor=page.next_cursor)
        seen += [c.id for c in page.clips]
    assert len(seen) == len(set(seen)) == 7
    assert len((await store.query(device="front")).clips) == 3
    assert len((await store.query(device="id-back")).clips) == 4
    assert len((await store.query(event="e0")).clips) == 3
    assert len((await store.query(since=base + 60, until=base + 180)).clips) == 2
    assert [c.activity_id for c in (await store.query(source="cloud")).clips] == ["a6"]
    assert len((await store.query(offset=5)).clips) == 2
    assert store.index.find(activity_id="a6") is not None
    with pytest.raises(RecordError, match="already indexed"):
        fake_clip(store, "front", base, 10, activity_id="a6")
    with pytest.raises(RecordError, match="bad cursor"):
        await store.query(cursor="nonsense")
    assert rig.store.usage() == 70
