"""S3 upload queue against moto's S3 running as a real server on 127.0.0.1, with real MP4 clips
(fragmented MP4 from the fake doorbell's H.264) in a real clip store and SQLite index."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from bridge.media.mp4 import Mp4Writer
from bridge.options import GIB
from bridge.record import Clip, ClipStore, RecordOptions, Retention
from bridge.record.s3 import S3Options, S3Uploader

from .fake_doorbell import noisy_video

START = 1_780_000_000.0
KEY_ID = "AKIATESTINGBRIDGE01"
SECRET = "testing-secret-key-do-not-log-0123456789"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials through boto3's default chain (env), and nothing else it could read."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bucket(request: pytest.FixtureRequest, moto_url: str) -> str:
    # moto's state is shared by the module's tests: one bucket per test.
    name = "clips-" + str(request.node.name).replace("_", "-")[5:50].strip("-").lower()
    admin(moto_url).create_bucket(Bucket=name)
    return name


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ClipStore]:
    store = ClipStore(tmp_path / "clips")
    yield store
    store.close()


def admin(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1")


def make_clip(store: ClipStore, device: str, start: float, event: str = "doorbell") -> Clip:
    """A finished clip with a real MP4 and thumbnail, written the way the recorder does."""
    rel = store.new_clip_path(device, start, event)
    clip = store.begin(
        Clip(device_id=f"id-{device}", device=device, event=event, start=start, path=rel)
    )
    writer = Mp4Writer(store.part_path(clip), audio=False)
    for packet in noisy_video():
        writer.write(packet)
    writer.close()
    done = store.finish(clip)
    assert done.state == "done"
    assert done.thumbnail is not None
    return done


def upload_row(store: ClipStore, clip_id: int) -> dict[str, Any]:
    rows = store.db.query(
        "SELECT uploaded, upload_attempts, upload_error, s3_key, s3_thumbnail_key, s3_size,"
        " local, size FROM clips WHERE id = ?",
        (clip_id,),
    )
    return dict(rows[0])


class Rig:
    def __init__(self, store: ClipStore, url: str, bucket: str) -> None:
        self.store = store
        self.url = url
        self.bucket = bucket
        self.uploaders: list[S3Uploader] = []

    def uploader(self, url: str | None = None, **options: Any) -> S3Uploader:
        options.setdefault("backoff", 0.2)
        options.setdefault("max_backoff", 0.4)
        uploader = S3Uploader(
            self.store,
            S3Options(
                bucket=self.bucket, endpoint_url=url or self.url, region="us-east-1", **options
            ),
        )
        self.uploaders.append(uploader)
        return uploader

    async def objects(self) -> dict[str, bytes]:
        def fetch() -> dict[str, bytes]:
            s3 = admin(self.url)
            listing = s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
            return {
                o["Key"]: s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()
                for o in listing
            }

        return await asyncio.to_thread(fetch)

    async def content_type(self, key: str) -> str:
        head = await asyncio.to_thread(admin(self.url).head_object, Bucket=self.bucket, Key=key)
        return str(head["ContentType"])


@pytest.fixture
async def rig(store: ClipStore, moto_url: str, bucket: str) -> AsyncIterator[Rig]:
    rig = Rig(store, moto_url, bucket)
    yield rig
    for uploader in rig.uploaders:
        await uploader.close()


def dead_endpoint() -> str:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_uploads_clips_and_thumbnails_under_the_prefix(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge")
    clips = [
        await asyncio.to_thread(make_clip, rig.store, "front-door", START),
        await asyncio.to_thread(make_clip, rig.store, "back-garden", START + 60, "motion"),
    ]
    uploader = rig.uploader(prefix="/home/bridge/")
    await uploader.start()
    await uploader.drain()
    assert await uploader.counts() == {"no": 0, "pending": 0, "done": 2, "failed": 0}
    objects = await rig.objects()
    expected = {}
    for clip in clips:
        assert clip.thumbnail is not None
        expected[f"home/bridge/{clip.path}"] = rig.store.file_of(clip).read_bytes()
        expected[f"home/bridge/{clip.thumbnail}"] = rig.store.resolve(clip.thumbnail).read_bytes()
    assert objects == expected
    key = f"home/bridge/{clips[0].path}"
    assert key.startswith("home/bridge/front-door/")
    assert key.endswith("_doorbell.mp4")
    assert await rig.content_type(key) == "video/mp4"
    assert await rig.content_type(key.replace(".mp4", ".jpg")) == "image/jpeg"
    row = upload_row(rig.store, clips[0].id)
    assert (row["uploaded"], row["s3_key"], row["upload_error"], row["local"]) == (
        "done",
        key,
        "",
        1,
    )
    location = uploader.location(clips[0].id)
    assert location is not None
    assert (location.bucket, location.key, location.local) == (rig.bucket, key, True)

    # A clip finished later is found by the scan; one in state failed never is.
    later = await asyncio.to_thread(make_clip, rig.store, "front-door", START + 120)
    rig.store.index.update(clips[1].id, uploaded="no")  # as if never sent: goes again
    broken = rig.store.index.add(
        Clip(device_id="x", device="x", event="e", start=START, path="x/y.mp4", state="failed")
    )
    await uploader.drain()
    assert upload_row(rig.store, later.id)["uploaded"] == "done"
    assert upload_row(rig.store, broken.id)["uploaded"] == "no"
    text = caplog.text
    assert "uploaded clip" in text
    assert KEY_ID not in text
    assert SECRET not in text


async def test_only_enqueued_clips_when_not_uploading_existing_ones(rig: Rig) -> None:
    first = await asyncio.to_thread(make_clip, rig.store, "front-door", START)
    second = await asyncio.to_thread(make_clip, rig.store, "front-door", START + 30)
    uploader = rig.uploader(upload_existing=False)
    await uploader.start()
    await uploader.drain()
    assert await rig.objects() == {}
    uploader.enqueue(second.id)
    await uploader.drain()
    assert upload_row(rig.store, first.id)["uploaded"] == "no"
    assert upload_row(rig.store, second.id)["uploaded"] == "done"
    assert len(await rig.objects()) == 2


async def test_delete_local_keeps_the_row_and_serves_through_a_presigned_url(rig: Rig) -> None:
    clip = await asyncio.to_thread(make_clip, rig.store, "front-door", START)
    assert clip.thumbnail is not None
    video, thumb = rig.store.file_of(clip), rig.store.resolve(clip.thumbnail)
    original = video.read_bytes()
    uploader = rig.uploader(delete_local=True)
    await uploader.start()
    await uploader.drain()
    assert not video.exists()
    assert not thumb.exists()
    row = upload_row(rig.store, clip.id)
    assert (row["uploaded"], row["local"], row["size"], row["s3_size"]) == (
        "done",
        0,
        0,
        len(original),
    )
    assert rig.store.index.get(clip.id) is not None
    assert rig.store.usage() == 0  # retention no longer counts it
    location = uploader.location(clip.id)
    assert location is not None
    assert not location.local
    url = await uploader.presigned_url(clip.id)
    assert url is not None
    assert "X-Amz-Signature=" in url
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == original
    thumb_url = await uploader.presigned_url(clip.id, thumbnail=True)
    assert thumb_url is not None
    async with aiohttp.ClientSession() as http, http.get(thumb_url) as resp:
        assert (await resp.read())[:2] == b"\xff\xd8"
    assert await uploader.presigned_url(clip.id + 1000) is None

    # A clip kept only in S3 is neither "missing" to a reindex nor room to win for retention.
    await rig.store.reindex()
    strict = RecordOptions(max_total_gb=1 / GIB, max_age_days=0.0001, min_free_mb=0)
    await asyncio.to_thread(Retention(rig.store, strict).run)
    assert rig.store.index.get(clip.id) is not None


async def test_failing_endpoint_leaves_rows_pending_and_a_restart_uploads_them(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge")
    clips = [
        await asyncio.to_thread(make_clip, rig.store, "front-door", START + n * 10)
        for n in range(2)
    ]
    down = rig.uploader(dead_endpoint())
    await down.start()
    await down.drain()
    for clip in clips:
        row = upload_row(rig.store, clip.id)
        assert row["uploaded"] == "pending"
        assert row["upload_attempts"] >= 1
        assert "EndpointConnectionError" in row["upload_error"]
    for _ in range(100):  # past the backoff, each clip is tried again
        await asyncio.sleep(0.1)
        await down.drain()
        if all(upload_row(rig.store, c.id)["upload_attempts"] >= 2 for c in clips):
            break
    assert all(upload_row(rig.store, c.id)["upload_attempts"] >= 2 for c in clips)
    assert sum("failed" in r.getMessage() for r in caplog.records if r.levelname == "WARNING") == 1
    await down.close()
    await down.close()

    # A new uploader (a restart) on the same store, with the endpoint working again.
    up = rig.uploader(backoff=60.0, max_backoff=60.0)
    await up.start()
    await up.drain()
    assert await up.counts() == {"no": 0, "pending": 0, "done": 2, "failed": 0}
    assert len(await rig.objects()) == 4
    text = caplog.text
    assert KEY_ID not in text
    assert SECRET not in text


async def test_a_vanished_file_is_abandoned_and_an_unknown_bucket_waits(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")
    gone = await asyncio.to_thread(make_clip, rig.store, "front-door", START)
    rig.store.file_of(gone).unlink()
    rig.bucket = "bucket-made-later"
    uploader = rig.uploader()
    kept = await asyncio.to_thread(make_clip, rig.store, "front-door", START + 5)
    await uploader.start()
    await uploader.drain()
    assert upload_row(rig.store, gone.id)["uploaded"] == "failed"
    assert upload_row(rig.store, gone.id)["upload_error"] == "the local file is gone"
    row = upload_row(rig.store, kept.id)
    assert row["uploaded"] == "pending"
    assert "NoSuchBucket" in row["upload_error"]
    assert "S3 uploads back" not in caplog.text

    # Once the bucket exists the next retry goes through, and the outage is over in the log.
    await asyncio.to_thread(admin(rig.url).create_bucket, Bucket=rig.bucket)
    for _ in range(100):  # the retry comes within max_backoff
        await asyncio.sleep(0.1)
        await uploader.drain()
        if upload_row(rig.store, kept.id)["uploaded"] == "done":
            break
    assert upload_row(rig.store, kept.id)["uploaded"] == "done"
    assert "S3 uploads back" in caplog.text


def test_options_are_checked(tmp_path: Path) -> None:
    # [s3] without a bucket is the loader's ConfigError when enabled; the uploader needs one.
    store = ClipStore(tmp_path)
    try:
        with pytest.raises(ValueError, match="bucket"):
            S3Uploader(store, S3Options(bucket=""))
    finally:
        store.close()
    assert S3Options(bucket="b", prefix="").key_for("a/b.mp4") == "a/b.mp4"
    assert S3Options(bucket="b", prefix="/x/y/").key_for("a/b.mp4") == "x/y/a/b.mp4"
