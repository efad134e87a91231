"""Hub packets in, a bounded window of fMP4 segments and LL-HLS parts out (synchronous, no I/O).

Video timing: a sample's duration is the gap to the next frame, so the newest frame is held
back until its successor arrives; parts therefore close exactly on frame boundaries with exact
durations, at the cost of one frame interval (67 ms at 15 fps) of latency.

Boundaries:
- a *segment* starts only at a keyframe; one is cut at the keyframe that lands nearest the
  target duration (the GOP decides; a doorbell whose GOP runs long is asked for a keyframe);
- a *part* closes before the frame that would take it past the part target, and also before
  every keyframe, so a keyframe always opens a part (``INDEPENDENT=YES``);
- a ``discontinuity`` packet (the hub's mark of a source reconnect) or new parameter sets end
  the segment at once; the next one, from the next keyframe, carries ``EXT-X-DISCONTINUITY``
  (and a new init section when the SPS/PPS changed: a resolution change mid-stream, which
  libwebrtc's quality scaler makes). Samples never carry parameter sets in-band (``avc1``), so
  each segment's init section must hold the ones its IDRs use;
- new parameter sets that cannot be read (a corrupt SPS, a picture of zero size) stop the
  packaging until a keyframe brings readable ones: keeping the old init section would label
  the new pictures with the wrong SPS, which no player decodes. ``error`` says why meanwhile.

Audio is transcoded to AAC by one encoder per segmenter and each part takes the AAC frames that
start before the part's video end; both tracks keep the hub's shared timeline, so ``tfdt``
values line up in seconds and players need no edit lists.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.hls.boxes import (
    AUDIO_TRACK,
    DELTA_FLAGS,
    KEY_FLAGS,
    VIDEO_TIMESCALE,
    VIDEO_TRACK,
    AudioConfig,
    TrackRun,
    VideoConfig,
    avcc_sample,
    fragment,
    init_segment,
)
from bridge.media.aac import AacTranscoder
from bridge.media.packet import MediaPacket, extract_sps_pps
from bridge.media.sps import parse_sps

__all__ = ["InitSection", "Part", "Segment", "Segmenter"]

_LOGGER = logging.getLogger(__name__)

_TRANSCODABLE = ("opus", "pcmu", "pcma")
_AAC_FRAME = 1024  # samples per AAC-LC frame
_AUDIO_BACKLOG = 512  # AAC frames held at most (over 10 s), should video stall while audio flows
ParameterSets = Callable[[], tuple[bytes | None, bytes | None]]


@dataclass(frozen=True, slots=True)
class InitSection:
    """An init segment (``EXT-X-MAP``); ``version`` grows when the parameter sets change."""

    version: int
    data: bytes
    video: VideoConfig
    audio: AudioConfig | None

    @property
    def codecs(self) -> str:
        """The ``CODECS`` attribute of a variant stream."""
        return ",".join(c.codec for c in (self.video, self.audio) if c is not None)


@dataclass(slots=True)
class Part:
    """One partial segment: a ``moof`` + ``mdat`` of about a part target."""

    msn: int
    index: int
    duration: int  # 90 kHz ticks
    independent: bool  # starts with a keyframe
    data: bytes | memoryview


@dataclass(slots=True)
class Segment:
    """A media segment: its parts back to back. Complete once the next one has begun."""

    msn: int
    start: int  # 90 kHz ticks on the hub timeline
    init: InitSection
    discontinuity: bool
    wallclock: float  # epoch seconds of the first frame, for EXT-X-PROGRAM-DATE-TIME
    parts: list[Part] = field(default_factory=list)
    duration: int = 0  # ticks of the closed parts
    data: bytes = b""
    complete: bool = False


class Segmenter:
    """Packages one stream's packets into HLS segments and parts, keeping the last ``window``."""

    def __init__(
        self,
        *,
        segment_target: float = 2.0,
        part_target: float = 0.3,
        window: int = 7,
        audio_wait: float = 0.5,
        parameter_sets: ParameterSets = lambda: (None, None),
        request_keyframe: Callable[[], None] = lambda: None,
    ) -> None:
        if not 0.1 <= part_target <= segment_target / 2:
            raise ValueError("part_target must be 0.1 s or more and at most half segment_target")
        if window < 3:
            raise ValueError("window must hold at least 3 segments")
        self.segment_target = segment_target
        self.part_target = part_target
        self.window = window
        self.segments: deque[Segment] = deque()
        # Segments that slid out of the playlist stay fetchable for a while: RFC 8216 6.2.2 wants
        # a removed segment available for its own duration plus the playlist's, because a client
        # may fetch it just after reading a playlist that still listed it (a slow 2-core box
        # did, and got a 404). Segments are close to the target, so window + 1 of them cover it.
        self._retired: deque[Segment] = deque(maxlen=window + 1)
        self.current: Segment | None = None
        self.init: InitSection | None = None
        self.discontinuity_sequence = 0
        self.error: str | None = None  # why video is not being packaged right now
        self.generation = 0  # bumped whenever a part or segment is published
        self.next_msn = 0
        self._longest = 0  # ticks of the longest segment so far: TARGETDURATION must cover it
        self._audio_wait = round(audio_wait * VIDEO_TIMESCALE)
        self._segment_ticks = round(segment_target * VIDEO_TIMESCALE)
        self._part_ticks_max = round(part_target * VIDEO_TIMESCALE)
        self._fallback_params = parameter_sets
        self._request_keyframe = request_keyframe
        self._startup: list[MediaPacket] = []
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self._refused: bytes | None = None  # the last unusable SPS, logged once
        self._aac: AacTranscoder | None = None
        self._audio: deque[tuple[int, bytes]] = deque(maxlen=_AUDIO_BACKLOG)
        self._audio_next = 0  # the AAC track's next free timestamp
        self._audio_floor = 0  # video ticks: audio before this is dropped
        self._pending: MediaPacket | None = None  # newest frame, waiting to learn its duration
        self._frames: list[tuple[bytes, int, bool]] = []  # the open part: sample, ticks, key
        self._part_ticks = 0
        self._steps: deque[int] = deque(maxlen=8)  # recent frame intervals
        self._last_key: int | None = None
        self._gop = 0
        self._next_discontinuity = False
        self._keyframe_asked_at = 0
        self._sequence = 1  # mfhd sequence number, one per part
        self._wall_anchor: tuple[int, float] = (0, 0.0)

    # -- what the playlists read -----------------------------------------------------------------

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION: whole seconds, covering every segment made so far."""
        longest = math.floor(self._longest / VIDEO_TIMESCALE + 0.5)
        return max(math.ceil(self.segment_target), longest, 1)

    @property
    def newest_part(self) -> tuple[int, int] | None:
        """(msn, index) of the newest part, if any."""
        if self.current is not None and self.current.parts:
            return self.current.msn, len(self.current.parts) - 1
        if self.segments:
            return self.segments[-1].msn, len(self.segments[-1].parts) - 1
        return None

    @property
    def next_part(self) -> tuple[int, int]:
        """(msn, index) of the part being built: the preload hint."""
        if self.current is not None:
            return self.current.msn, len(self.current.parts)
        return self.next_msn, 0

    def segment(self, msn: int) -> Segment | None:
        """A complete segment still in the window, or retired from it but still kept."""
        kept = [*self._retired, *self.segments]
        if not kept or msn < kept[0].msn:
            return None
        index = msn - kept[0].msn
        return kept[index] if index < len(kept) else None

    def part(self, msn: int, index: int) -> Part | None:
        """A part of a segment in the window or of the one being built."""
        seg = self.current if self.current is not None and self.current.msn == msn else None
        seg = seg or self.segment(msn)
        if seg is None or not 0 <= index < len(seg.parts):
            return None
        return seg.parts[index]

    def init_section(self, version: int) -> InitSection | None:
        """An init section some listed segment still refers to."""
        listed = [*self._retired, *self.segments, *([self.current] if self.current else [])]
        return next((s.init for s in listed if s.init.version == version), None)

    # -- input -----------------------------------------------------------------------------------

    def feed(self, packet: MediaPacket) -> None:
        """Take one hub packet; may publish parts and segments (see ``generation``)."""
        if self.init is None:
            self._start_up(packet)
        elif packet.kind == "audio":
            self._audio_in(packet)
        elif packet.codec == "h264":
            self._video_in(packet)

    def _start_up(self, packet: MediaPacket) -> None:
        # Both tracks must be known before the init segment exists, so hold packets from the
        # first keyframe until audio shows up or ``audio_wait`` of video passed without any.
        if not self._startup and not (packet.kind == "video" and packet.keyframe):
            return
        if packet.kind == "video" and packet.codec != "h264":
            return
        self._startup.append(packet)
        video = [p for p in self._startup if p.kind == "video"]
        audio = next((p for p in self._startup if p.kind == "audio"), None)
        if audio is None and video[-1].pts - video[0].pts < self._audio_wait:
            return
        held, self._startup = self._startup, []
        sps, pps = self._parameter_sets(held[0])
        if sps is None or pps is None:
            _LOGGER.warning("no SPS/PPS with the first keyframe; waiting for the next one")
            return
        try:
            parse_sps(sps)
        except ValueError as err:
            self._refuse(sps, err)
            return
        if audio is not None and audio.codec in _TRANSCODABLE:
            self._aac = AacTranscoder(audio.codec, audio.clock_rate)
        elif audio is not None:
            _LOGGER.warning("cannot package %s audio as AAC; video only", audio.codec)
        self.init = self._make_init(sps, pps)
        self.error = None
        key = held[0]
        # Program date-time: the wall clock when the first keyframe arrived, carried along the
        # hub timeline (which keeps wall-clock gaps across reconnects).
        self._wall_anchor = (key.pts, time.time() - (time.monotonic() - key.arrival))
        for p in held:
            self.feed(p)

    def _parameter_sets(self, keyframe: MediaPacket) -> tuple[bytes | None, bytes | None]:
        # Many encoders send SPS/PPS only with some keyframes; the last ones seen still apply.
        sps, pps = extract_sps_pps(keyframe.data)
        self._sps, self._pps = sps or self._sps, pps or self._pps
        if self._sps is None or self._pps is None:
            fallback_sps, fallback_pps = self._fallback_params()
            self._sps, self._pps = self._sps or fallback_sps, self._pps or fallback_pps
        return self._sps, self._pps

    def _make_init(self, sps: bytes, pps: bytes) -> InitSection:
        info = parse_sps(sps)
        video = VideoConfig(sps, pps, info.width, info.height)
        audio = None
        if self._aac is not None:
            audio = AudioConfig(self._aac.extradata, self._aac.sample_rate)
        version = self.init.version + 1 if self.init is not None else 1
        return InitSection(version, init_segment(video, audio), video, audio)

    def _audio_in(self, packet: MediaPacket) -> None:
        aac = self._aac
        if aac is None or packet.codec != aac.source_codec:
            return  # no audio track, or the codec changed under the init segment
        for out in aac.transcode(packet):
            pts = out.pts
            if self._before_floor(pts):
                continue
            if pts < self._audio_next:
                # The transcoder re-anchored backwards: an overlapping frame would make the
                # track's time run backwards, so nudge a rounding error and drop real overlap.
                if self._audio_next - pts > _AAC_FRAME // 2:
                    continue
                pts = self._audio_next
            self._audio.append((pts, out.data))
            self._audio_next = pts + _AAC_FRAME

    def _refuse(self, sps: bytes, err: ValueError) -> None:
        # Log once per bad SPS, not at every keyframe that repeats it.
        if self._refused != sps:
            self._refused = sps
            _LOGGER.warning("HLS: the stream's SPS cannot be used (%s); waiting for another", err)
        self.error = f"the doorbell's video cannot be packaged: {err}"
        self._flush_pending()
        self._end_segment()
        self._next_discontinuity = True
        self._last_key = None

    def _video_in(self, packet: MediaPacket) -> None:
        assert self.init is not None
        new_init: InitSection | None = None
        if packet.keyframe:
            sps, pps = self._parameter_sets(packet)
            if sps and pps and (sps, pps) != (self.init.video.sps, self.init.video.pps):
                try:
                    new_init = self._make_init(sps, pps)
                except ValueError as err:
                    self._refuse(sps, err)
                    return
            self.error = None
        elif self.error is not None:
            return  # frames of an unusable SPS: nothing to package until the next keyframe
        if packet.discontinuity or new_init:
            self._flush_pending()
            self._end_segment()
            self._next_discontinuity = True
            self._last_key = None
            if new_init:
                self.init = new_init
        prev = self._pending
        if prev is not None:
            self._append(prev, packet.pts - prev.pts)
        if packet.keyframe:
            if self._last_key is not None:
                self._gop = packet.pts - self._last_key
            self._last_key = packet.pts
        if packet.keyframe and (self.current is None or self._segment_due()):
            fresh = self.current is None
            self._end_segment()
            self._start_segment(packet, fresh)
        elif self.current is None:
            self._pending = None  # no segment can start before a keyframe
            return
        elif packet.keyframe or (
            self._frames and self._part_ticks + max(self._steps) > self._part_ticks_max
        ):
            self._end_part()
        self._pending = packet
        self._ask_keyframe_if_overdue()

    def _append(self, packet: MediaPacket, ticks: int) -> None:
        assert self.init is not None
        params = (self.init.video.sps, self.init.video.pps) if packet.keyframe else None
        self._frames.append((avcc_sample(packet.data, params), ticks, packet.keyframe))
        self._part_ticks += ticks
        self._steps.append(ticks)

    def _flush_pending(self) -> None:
        # The newest frame's successor will not come (reconnect): assume the usual interval.
        if self._pending is not None:
            self._append(self._pending, max(self._steps, default=VIDEO_TIMESCALE // 15))
            self._pending = None

    def _segment_due(self) -> bool:
        # Cut at the keyframe nearest the target: now, unless the next one (a GOP away) would
        # land closer to it.
        assert self.current is not None
        length = self.current.duration + self._part_ticks
        return 2 * length + self._gop >= 2 * self._segment_ticks

    def _ask_keyframe_if_overdue(self) -> None:
        # A doorbell with a long GOP would make segments (and TARGETDURATION) balloon; a PLI
        # gets a keyframe, asked for at most once per target duration.
        assert self.current is not None
        length = self.current.duration + self._part_ticks
        if length >= self._segment_ticks * 3 // 2 and (
            length - self._keyframe_asked_at >= self._segment_ticks
        ):
            self._keyframe_asked_at = length
            self._request_keyframe()

    def _start_segment(self, keyframe: MediaPacket, fresh: bool) -> None:
        assert self.init is not None
        anchor_pts, anchor_wall = self._wall_anchor
        wallclock = anchor_wall + (keyframe.pts - anchor_pts) / VIDEO_TIMESCALE
        self.current = Segment(
            self.next_msn, keyframe.pts, self.init, self._next_discontinuity, wallclock
        )
        self.next_msn += 1
        self._next_discontinuity = False
        self._keyframe_asked_at = 0
        if fresh:
            # After startup or a reconnect, audio from before the first picture has no video
            # to go with. (Between segments, late audio simply joins the next part.)
            self._audio_floor = keyframe.pts
            while self._audio and self._before_floor(self._audio[0][0]):
                self._audio.popleft()

    def _before_floor(self, audio_pts: int) -> bool:
        rate = self._aac.sample_rate if self._aac else VIDEO_TIMESCALE
        return audio_pts * VIDEO_TIMESCALE < self._audio_floor * rate

    # -- output ----------------------------------------------------------------------------------

    def _end_part(self) -> None:
        seg = self.current
        if seg is None or not self._frames:
            return
        start = seg.start + seg.duration
        runs = [
            TrackRun(
                VIDEO_TRACK,
                start,
                [(len(s), d, KEY_FLAGS if k else DELTA_FLAGS) for s, d, k in self._frames],
                b"".join(s for s, _, _ in self._frames),
            )
        ]
        audio = self._take_audio(start + self._part_ticks)
        if audio is not None:
            runs.append(audio)
        data = fragment(self._sequence, runs)
        self._sequence += 1
        seg.parts.append(Part(seg.msn, len(seg.parts), self._part_ticks, self._frames[0][2], data))
        seg.duration += self._part_ticks
        self._frames, self._part_ticks = [], 0
        self.generation += 1

    def _take_audio(self, end: int) -> TrackRun | None:
        if self._aac is None or not self._audio:
            return None
        rate = self._aac.sample_rate
        taken: list[tuple[int, bytes]] = []
        while self._audio and self._audio[0][0] * VIDEO_TIMESCALE < end * rate:
            taken.append(self._audio.popleft())
        if not taken:
            return None
        samples: list[tuple[int, int, int | None]] = []
        for i, (pts, data) in enumerate(taken):
            # A gap in the audio (lost packets) stretches the frame before it: a trun cannot
            # skip time between samples.
            nxt = taken[i + 1][0] if i + 1 < len(taken) else pts + _AAC_FRAME
            samples.append((len(data), nxt - pts, None))
        return TrackRun(AUDIO_TRACK, taken[0][0], samples, b"".join(d for _, d in taken))

    def _end_segment(self) -> None:
        self._end_part()
        seg, self.current = self.current, None
        if seg is None:
            return
        if not seg.parts:
            self.next_msn = seg.msn  # nothing was published under this number; reuse it
            return
        seg.data = b"".join(p.data for p in seg.parts)
        # The parts stay listed a while; let them point into the joined bytes, not duplicate them.
        view, offset = memoryview(seg.data), 0
        for part in seg.parts:
            size = len(part.data)
            part.data = view[offset : offset + size]
            offset += size
        seg.complete = True
        self._longest = max(self._longest, seg.duration)
        self.segments.append(seg)
        while len(self.segments) > self.window:
            retired = self.segments.popleft()
            self._retired.append(retired)
            if retired.discontinuity:
                self.discontinuity_sequence += 1
        self.generation += 1
