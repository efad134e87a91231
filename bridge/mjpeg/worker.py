"""The work one batch of packets takes, done in a worker thread: decode, pick frames, encode.

A ``Worker`` belongs to one hub subscription and is only ever used by one thread at a time
(the pump awaits each batch before sending the next), so it needs no locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av

from bridge.media.packet import MediaPacket
from bridge.media.sps import ParameterSetTracker
from bridge.mjpeg.options import FrameSpec
from bridge.mjpeg.picture import H264Decoder, JpegEncoder

__all__ = ["CLOCK", "Batch", "Picture", "Result", "Worker"]

CLOCK = 90000  # the hub's video timeline runs at 90 kHz
_MAX_ARRIVALS = 64


@dataclass(slots=True)
class Picture:
    """A decoded picture, when its packet arrived, and its JPEGs made so far (by size)."""

    arrival: float
    frame: av.VideoFrame
    jpegs: dict[tuple[int, int], bytes] = field(default_factory=dict)


@dataclass(slots=True)
class Batch:
    """Packets to decode and, per output, when its next frame is due."""

    packets: list[MediaPacket]
    full: bool  # decode every frame (viewers watch) or only keyframes (snapshots wait)
    fresh_after: float  # keyframes-only: a keyframe that arrived before this is not worth it
    due: dict[FrameSpec, float | None]  # output -> pts at which its next frame is due
    sps: bytes | None
    pps: bytes | None
    resync: bool = False  # packets were dropped before this batch


@dataclass(slots=True)
class Result:
    """What a batch produced."""

    newest: Picture | None
    jpegs: dict[FrameSpec, tuple[bytes, tuple[int, int]]]
    due: dict[FrameSpec, float | None]
    decoded: int
    encoded: int


class Worker:
    """One decoder and one JPEG encoder per output size, for one subscription."""

    def __init__(self, quality: int) -> None:
        self.quality = quality
        self.decoder = H264Decoder()
        self.encoders: dict[tuple[int, int], JpegEncoder] = {}
        self._arrivals: dict[int, float] = {}  # pts -> arrival, for pictures the decoder holds
        # The parameter sets of the packets in hand, for IDRs that come without them: the ones
        # last seen in-band, else the stream's latest. After a resolution change the decoder
        # gets the new ones and makes pictures of the new size; each output then encodes at
        # ``spec.size_for`` of that size (same width cap, the new aspect), with a new encoder.
        self._latest: tuple[bytes | None, bytes | None] = (None, None)
        self._params = ParameterSetTracker(lambda: self._latest)

    def process(self, batch: Batch) -> Result:
        """Decode the batch and encode, per output size, the frames that are due."""
        if batch.resync:
            self.decoder.skip()
            # Packets were dropped, maybe one that brought new parameter sets: resume with the
            # stream's latest, which are the live edge's (where a resync resumes).
            self._params = ParameterSetTracker(lambda: self._latest)
        self._latest = batch.sps, batch.pps
        pictures: list[Picture] = []
        for packet in batch.packets:
            if packet.keyframe:
                self._params.update(packet.data)  # also from keyframes skipped below
            if not batch.full and (not packet.keyframe or packet.arrival < batch.fresh_after):
                # Skipping a P-frame breaks the reference chain: keyframes-only from here.
                self.decoder.skip()
                continue
            self._arrivals[packet.pts] = packet.arrival
            if len(self._arrivals) > _MAX_ARRIVALS:
                self._arrivals.pop(next(iter(self._arrivals)))
            sps, pps = self._params.current
            frames = self.decoder.decode(packet.data, packet.pts, packet.keyframe, sps, pps)
            for frame in frames:
                arrival = packet.arrival
                if frame.pts is not None:
                    arrival = self._arrivals.pop(frame.pts, arrival)
                pictures.append(Picture(arrival, frame))
        if not pictures:
            return Result(None, {}, dict(batch.due), 0, 0)
        newest = pictures[-1].frame
        needed = {spec.size_for(newest.width, newest.height) for spec in batch.due}
        for size in set(self.encoders) - needed:
            del self.encoders[size]  # no output wants this size any more
        due = dict(batch.due)
        chosen = {spec: _pick(pictures, due, spec) for spec in batch.due}
        jpegs, encoded = self._encode(chosen)
        return Result(pictures[-1], jpegs, due, len(pictures), encoded)

    def _encode(
        self, chosen: dict[FrameSpec, Picture | None]
    ) -> tuple[dict[FrameSpec, tuple[bytes, tuple[int, int]]], int]:
        # Outputs that chose the same picture at the same size share one encode: ten viewers
        # at one size cost what one costs.
        made: dict[tuple[int, tuple[int, int]], bytes] = {}
        out: dict[FrameSpec, tuple[bytes, tuple[int, int]]] = {}
        for spec, picture in chosen.items():
            if picture is None:
                continue
            size = spec.size_for(picture.frame.width, picture.frame.height)
            key = (id(picture), size)
            if key not in made:
                encoder = self.encoders.get(size)
                if encoder is None:
                    encoder = self.encoders[size] = JpegEncoder(*size, self.quality)
                made[key] = encoder.encode(picture.frame)
            out[spec] = (made[key], size)
        return out, len(made)


def _pick(
    pictures: list[Picture], due: dict[FrameSpec, float | None], spec: FrameSpec
) -> Picture | None:
    """The newest picture due at the output's frame rate; advances its clock past the others.

    Only the newest is worth encoding: an older one would be replaced before anyone saw it
    (a batch holds several frames only when catching up after a join or a stall).
    """
    interval = CLOCK / spec.fps
    next_due = due[spec]
    picked: Picture | None = None
    for picture in pictures:
        pts = picture.frame.pts
        if pts is None:
            picked = picture
            continue
        # A quarter interval of slack absorbs timestamp jitter, so a 15 fps cap on a 15 fps
        # source does not drop every other frame that comes a tick early.
        if next_due is None or pts - next_due >= interval:
            picked, next_due = picture, pts + interval  # first frame, or far behind: restart
        elif pts + interval / 4 >= next_due:
            picked, next_due = picture, next_due + interval
    due[spec] = next_due
    return picked
