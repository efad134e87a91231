"""The recorder: event clips with pre-roll from the hub's ring, one clip per doorbell at a time.

A trigger subscribes to the doorbell's stream asking for ``preroll`` seconds of backlog (the
hub hands it whole GOPs, so the clip starts at a keyframe at or before that point), then takes
live packets until ``postroll`` seconds after the last event, capped at ``max_length`` from the
clip's first frame. Another event meanwhile only moves the end. Clips never overlap: a new
clip's pre-roll stops where the previous clip ended.

The event loop only routes packets; muxing and file writes run on the clip's writer thread,
and SQLite, retention and thumbnails run through ``asyncio.to_thread``. Nothing here can stop
a stream or hurt its other subscribers: the recorder is just one more subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Protocol, TypedDict

from bridge.clock import SYSTEM_CLOCK, Clock
from bridge.errors import UnknownDevice
from bridge.heap import release_free_heap
from bridge.media.hub import Stream
from bridge.media.packet import MediaPacket, extract_sps_pps
from bridge.record.active import ActiveClip
from bridge.record.errors import RecordError
from bridge.record.index import Clip
from bridge.record.mp4file import clip_tags
from bridge.record.options import DeviceOptions, RecordOptions
from bridge.record.retention import Retention
from bridge.record.store import ClipStore
from bridge.record.thumbnail import thumbnail_from_keyframe
from bridge.record.writer import ClipWriter
from bridge.tasks import TaskSet

__all__ = ["MANUAL", "Recorder", "RecorderStats", "StreamSource"]

_LOGGER = logging.getLogger(__name__)
MANUAL = "manual"
_START_CODE = b"\x00\x00\x00\x01"
# The recorder's queue must hold the whole pre-roll backlog at once (10 s of 15 fps video plus
# 50 audio frames a second is 650 packets), more than a live viewer's default allows.
_QUEUE_PACKETS = 4000
_QUEUE_BYTES = 96 << 20


class StreamSource(Protocol):
    """Where the recorder finds streams; ``bridge.media.hub.Hub`` is one."""

    def get(self, name_or_id: str) -> Stream | None:
        """The stream with this name or device id."""
        ...

    @property
    def streams(self) -> list[Stream]:
        """Every stream."""
        ...


class RecorderStats(TypedDict):
    """Clips finished since start, by outcome, and the clips being recorded now."""

    recorded: int  # finished and playable
    failed: int  # failed, or nothing could be recorded (no video came, the file never started)
    bytes: int  # size of the recorded clips
    recording: int


class Recorder:
    """Records event clips from hub streams into a ``ClipStore``.

    ``clock`` must be the one the streams run on (``Hub.clock``): pre-roll and clip ends
    compare it with the packets' arrival stamps.
    """

    def __init__(
        self,
        streams: StreamSource,
        store: ClipStore,
        options: RecordOptions | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.streams = streams
        self.clock = clock
        self.store = store
        self.options = options or RecordOptions()
        self.retention = Retention(store, self.options)
        self._jobs: dict[str, ActiveClip] = {}  # device id -> its clip
        self._floors: dict[str, float] = {}  # device id -> arrival of its last recorded packet
        self._background = TaskSet()  # retention and keep-warm loops: cancelled on close
        self._clips = TaskSet()  # one capture per clip: finished, never cut, on close
        self._closed = False
        self._recorded = 0
        self._failed = 0
        self._bytes = 0

    # -- public API ----------------------------------------------------------------------------

    async def start(self) -> list[Clip]:
        """Recover clips a crash left behind, then start retention and keep-warm tasks."""
        recovered = await self.store.recover()
        self._background.spawn(self._retention_loop(), "recorder retention")
        for stream in self.streams.streams:
            if self.options.for_device(stream.device_id, stream.name).keep_warm:
                self._background.spawn(self._keep_warm(stream), f"recorder keep-warm {stream.name}")
        return recovered

    async def trigger(
        self, stream: Stream | str, event: str, *, activity_id: str | None = None
    ) -> ActiveClip | None:
        """Start a clip for ``event``, or extend the one running; None when the options say
        not to record this event. Raises StorageFull when there is no room."""
        return await self._begin(self._stream(stream), event, activity_id, manual=False)

    async def start_manual(self, stream: Stream | str) -> ActiveClip:
        """Record until ``stop()`` (or the maximum length)."""
        job = await self._begin(self._stream(stream), MANUAL, None, manual=True)
        assert job is not None
        return job

    async def stop(self, stream: Stream | str) -> Clip | None:
        """Finish the doorbell's current clip now; returns its row (None if none was running)."""
        job = self._jobs.get(self._stream(stream).device_id)
        if job is None:
            return None
        job.end_now()
        return await job.wait()

    def active(self) -> list[ActiveClip]:
        """The clips being recorded."""
        return list(self._jobs.values())

    def stats(self) -> RecorderStats:
        """Counters for ``/metrics``."""
        return {
            "recorded": self._recorded,
            "failed": self._failed,
            "bytes": self._bytes,
            "recording": len(self._jobs),
        }

    async def close(self) -> None:
        """Finish every clip and stop background work; safe to call twice."""
        self._closed = True
        for job in list(self._jobs.values()):
            job.end_now()
        await self._background.cancel_all()
        await self._clips.join()

    # -- starting a clip -----------------------------------------------------------------------

    def _stream(self, stream: Stream | str) -> Stream:
        if isinstance(stream, Stream):
            return stream
        found = self.streams.get(stream)
        if found is None:
            raise UnknownDevice(stream, [s.name for s in self.streams.streams])
        return found

    async def _begin(
        self, stream: Stream, event: str, activity_id: str | None, *, manual: bool
    ) -> ActiveClip | None:
        opts = self.options.for_device(stream.device_id, stream.name)
        if not manual and event == "motion" and not opts.record_motion:
            return None
        job = self._jobs.get(stream.device_id)
        if job is not None:
            job.extend(self.clock.now(), opts.postroll, manual=manual, activity_id=activity_id)
            return job
        if self._closed:
            raise RecordError("the recorder is closed")
        checked = stream.state == "idle"
        if checked:
            # Nothing is buffered, so nothing is lost by checking for room first, and a full
            # disk does not wake the doorbell (and drain its battery) for a refused clip.
            await asyncio.to_thread(self.retention.make_room, self.options.reserve_bytes)
            job = self._jobs.get(stream.device_id)
            if job is not None:  # another event started one meanwhile
                job.extend(self.clock.now(), opts.postroll, manual=manual, activity_id=activity_id)
                return job
        # Subscribe before anything else that awaits, so the backlog is what the ring holds
        # at the event. Never reach into the previous clip.
        now = self.clock.now()
        preroll = min(opts.preroll, now - self._floors.get(stream.device_id, 0.0))
        sub = stream.subscribe(
            "recorder", preroll=preroll, max_packets=_QUEUE_PACKETS, max_bytes=_QUEUE_BYTES
        )
        job = ActiveClip(stream, sub, event, activity_id, manual, now, self.clock)
        job.cap = now + opts.max_length + opts.preroll  # until the first frame pins it
        job.deadline = job.cap if manual else now + opts.postroll
        self._jobs[stream.device_id] = job  # claimed before any await: one clip per doorbell
        try:
            if not checked:
                await asyncio.to_thread(self.retention.make_room, self.options.reserve_bytes)
            if self._closed:
                raise RecordError("the recorder is closed")
        except BaseException:
            self._drop(job)
            raise
        job._arm(self.options.start_timeout)
        self._clips.spawn(self._capture(job, stream, opts), f"clip {job.device}")
        _LOGGER.info(
            "recording %s: %s (pre-roll up to %.1f s)",
            job.device,
            event,
            preroll,
        )
        return job

    def _drop(self, job: ActiveClip) -> None:
        job.sub.close()
        if self._jobs.get(job.device_id) is job:
            del self._jobs[job.device_id]
        job._resolve(None)

    # -- capturing -----------------------------------------------------------------------------

    async def _capture(self, job: ActiveClip, stream: Stream, opts: DeviceOptions) -> None:
        result: Clip | None = None
        try:
            writer, note = await self._take_packets(job, stream, opts)
            if writer is None or job.clip is None:
                _LOGGER.warning(
                    "clip %s/%s: no video arrived; nothing recorded", job.device, job.event
                )
                return
            await writer.wait()
            if writer.error is not None and not note:
                note = f"write error: {writer.error}"
            if job.thumbnail is not None:
                with contextlib.suppress(Exception):
                    await job.thumbnail
            result = await asyncio.to_thread(self._finish, job, note)
            _LOGGER.info(
                "clip %s: %s, %.1f s (pre-roll %.1f s)%s",
                result.path,
                result.state,
                result.duration,
                result.preroll,
                f": {note}" if note else "",
            )
        except Exception:
            _LOGGER.exception("clip %s/%s failed", job.device, job.event)
        finally:
            if result is not None and result.state == "done":
                self._recorded += 1
                self._bytes += result.size
            else:
                self._failed += 1
            job._resolve(result)

    async def _take_packets(
        self, job: ActiveClip, stream: Stream, opts: DeviceOptions
    ) -> tuple[ClipWriter | None, str]:
        """Route packets to the clip's writer until the clip ends; returns the writer and why
        it ended early, if it did."""
        floor = self._floors.get(job.device_id, 0.0)
        writer: ClipWriter | None = None
        note = ""
        last = 0.0
        next_check = self.clock.now() + self.options.space_check_interval
        try:
            async for packet in job.sub:
                if packet.arrival <= floor:
                    continue  # the previous clip has it
                if writer is None:
                    if packet.kind != "video" or not packet.keyframe:
                        continue
                    writer = await self._open(job, stream, packet, opts)
                    if writer is None:
                        note = "could not start the file"
                        break
                else:
                    writer.put(packet)
                last = packet.arrival
                if writer.error is not None:
                    note = f"write error: {writer.error}"
                    break
                if self.clock.now() >= next_check:
                    next_check = self.clock.now() + self.options.space_check_interval
                    problem = await asyncio.to_thread(self.retention.check)
                    if problem is not None:
                        note = f"stopped early, storage full: {problem}"
                        _LOGGER.error("clip %s: %s", job.device, note)
                        break
        finally:
            job.sub.close()
            if self._jobs.get(job.device_id) is job:
                del self._jobs[job.device_id]
            if last:
                self._floors[job.device_id] = last
            if writer is not None:
                writer.finish()
        return writer, note

    async def _open(
        self, job: ActiveClip, stream: Stream, key: MediaPacket, opts: DeviceOptions
    ) -> ClipWriter | None:
        """Index the clip and start its writer at its first keyframe."""
        key = _with_parameter_sets(key, stream)
        job.first_frame = key.arrival
        job.preroll = max(0.0, job.triggered - key.arrival)
        job.cap = key.arrival + opts.max_length
        if job.manual:
            job.deadline = job.cap
        elif job.preroll == 0.0:
            # The stream was cold: no pre-roll, and the live call took a while. Count the
            # post-roll from the first picture, or the clip would be only the start-up wait.
            job.deadline = max(job.deadline, key.arrival + opts.postroll)
        job._expire()
        start = self.clock.wall() - (self.clock.now() - key.arrival)
        try:
            job.clip = await asyncio.to_thread(self._index_new, job, start)
        except (RecordError, OSError) as err:
            _LOGGER.error("clip %s/%s: cannot start: %s", job.device, job.event, err)
            return None
        clip = job.clip
        writer = ClipWriter(
            self.store.part_path(clip),
            audio=opts.audio,
            fragment_seconds=self.options.fragment_seconds,
            metadata=clip_tags(dataclasses.asdict(clip), clip.start),
        )
        writer.put(key)
        thumb = self.store.file_of(clip).with_suffix(".jpg")
        job.thumbnail = asyncio.ensure_future(
            asyncio.to_thread(thumbnail_from_keyframe, key.data, thumb)
        )
        return writer

    def _index_new(self, job: ActiveClip, start: float) -> Clip:
        activity = job.activity_id
        if activity is not None and self.store.index.find(activity_id=activity) is not None:
            _LOGGER.warning("activity %s already has a clip; not linking another", activity)
            activity = None
        rel = self.store.new_clip_path(job.device, start, job.event)
        clip = Clip(
            device_id=job.device_id,
            device=job.device,
            event=job.event,
            start=start,
            path=rel,
            state="recording",
            preroll=round(job.preroll, 3),
            activity_id=activity,
        )
        try:
            return self.store.begin(clip)
        finally:
            self.store.release(rel)

    def _finish(self, job: ActiveClip, note: str) -> Clip:
        clip = job.clip
        assert clip is not None
        activity = job.activity_id
        if (
            activity
            and clip.activity_id is None
            and not self.store.index.find(activity_id=activity)
        ):
            self.store.index.update(clip.id, activity_id=activity)  # named by a later event
        try:
            return self.store.finish(clip, note=note)
        finally:
            release_free_heap()  # the clip's freed buffers: see bridge/heap.py

    # -- background ----------------------------------------------------------------------------

    async def _retention_loop(self) -> None:
        while True:
            await self.clock.sleep(self.options.retention_interval)
            try:
                await asyncio.to_thread(self.retention.run)
            except Exception:
                _LOGGER.exception("retention failed")

    async def _keep_warm(self, stream: Stream) -> None:
        # Keeps the live session (and so the pre-roll ring) running. Costs doorbell battery
        # and cloud data all day; the README says so next to the option.
        while True:
            stream.keep_warm(60.0)
            await self.clock.sleep(20.0)


def _with_parameter_sets(key: MediaPacket, stream: Stream) -> MediaPacket:
    """The keyframe with SPS/PPS in front if it lacks them: the MP4 track header (avcC) is
    built from the first packet, and many cameras send parameter sets only now and then."""
    sps, pps = extract_sps_pps(key.data)
    if sps is not None and pps is not None:
        return key
    if stream.sps is None or stream.pps is None:
        return key
    data = _START_CODE + stream.sps + _START_CODE + stream.pps + key.data
    return dataclasses.replace(key, data=data)
