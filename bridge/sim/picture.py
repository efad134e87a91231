"""Pictures for the simulated doorbell: a moving test card with a burned-in clock, frame counter
and a machine-readable stamp that survives H.264, plus real JPEG snapshots.

Everything is drawn straight into YUV 4:2:0 planes with numpy (no Pillow, no RGB conversion),
because the picture is regenerated for every frame at up to 1080p.

The stamp is a grid of 16x16 black/white blocks in the top-left corner, aligned to the H.264
macroblock grid so each block is one flat macroblock: even a starved encoder keeps its mean.
It carries the frame number (32 bits), the capture wall-clock time in ms (48 bits) and a
CRC-16, so a test or benchmark can decode a frame and compute the end-to-end latency.
"""

from __future__ import annotations

import binascii
import time
from fractions import Fraction
from typing import Any

import av
import numpy as np
import numpy.typing as npt

__all__ = [
    "STAMP_BITS",
    "read_stamp",
    "render_frame",
    "render_text",
    "snapshot_jpeg",
    "text_width",
]

Plane = npt.NDArray[np.uint8]

_BLOCK = 16
_MARGIN = 16
_FRAME_BITS = 32
_TIME_BITS = 48
_CRC_BITS = 16
STAMP_BITS = _FRAME_BITS + _TIME_BITS + _CRC_BITS
_BLACK = 16  # video-range luma
_WHITE = 235

# A 5x7 bitmap font: each glyph is seven rows of five bits, most significant bit on the left.
_FONT: dict[str, tuple[int, ...]] = {
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E),
    "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F),
    "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02),
    "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E),
    "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E),
    "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
    "A": (0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "B": (0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E),
    "C": (0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E),
    "D": (0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C),
    "E": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F),
    "F": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10),
    "G": (0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F),
    "H": (0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "I": (0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "J": (0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C),
    "K": (0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11),
    "L": (0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F),
    "M": (0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11),
    "N": (0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11),
    "O": (0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E),
    "P": (0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10),
    "Q": (0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D),
    "R": (0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11),
    "S": (0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E),
    "T": (0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04),
    "U": (0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E),
    "V": (0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04),
    "W": (0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A),
    "X": (0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11),
    "Y": (0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04),
    "Z": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F),
    ":": (0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00),
    ".": (0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C),
    "-": (0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00),
    "#": (0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A),
    "/": (0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10),
    "_": (0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F),
    " ": (0x00,) * 7,
}
_UNKNOWN = (0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F)


def _glyph(char: str) -> npt.NDArray[np.bool_]:
    rows = _FONT.get(char.upper(), _UNKNOWN)
    bits = [[(row >> (4 - col)) & 1 for col in range(5)] for row in rows]
    return np.array(bits, dtype=bool)


_GLYPHS = {char: _glyph(char) for char in _FONT}


def text_width(text: str, scale: int) -> int:
    """Width in pixels of ``text`` drawn by :func:`render_text` at ``scale``."""
    return len(text) * 6 * scale


def render_text(plane: Plane, text: str, x: int, y: int, scale: int, value: int = _WHITE) -> None:
    """Draw ``text`` into a luma plane in place, clipped to the plane."""
    height, width = plane.shape
    for i, char in enumerate(text):
        glyph = _GLYPHS.get(char.upper())
        if glyph is None:
            glyph = _glyph(char)
        big = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        gx = x + i * 6 * scale
        x0, y0 = max(gx, 0), max(y, 0)
        x1, y1 = min(gx + big.shape[1], width), min(y + big.shape[0], height)
        if x1 <= x0 or y1 <= y0:
            continue
        region = plane[y0:y1, x0:x1]
        region[big[y0 - y : y1 - y, x0 - gx : x1 - gx]] = value


def _stamp_layout(width: int) -> tuple[int, int]:
    """(blocks per row, rows) of the stamp for a picture ``width`` pixels wide."""
    per_row = (width - 2 * _MARGIN) // _BLOCK
    if per_row < 8:
        raise ValueError(f"picture too narrow for the stamp: {width} px")
    return per_row, -(-STAMP_BITS // per_row)


def _stamp_bits(frame_no: int, capture_ms: int) -> list[int]:
    payload = (frame_no & 0xFFFFFFFF).to_bytes(4, "big") + (capture_ms & (2**48 - 1)).to_bytes(
        6, "big"
    )
    crc = binascii.crc_hqx(payload, 0xFFFF)
    value = int.from_bytes(payload + crc.to_bytes(2, "big"), "big")
    return [(value >> (STAMP_BITS - 1 - i)) & 1 for i in range(STAMP_BITS)]


def _draw_stamp(luma: Plane, frame_no: int, capture_ms: int) -> int:
    """Draw the stamp; return the y just below it."""
    per_row, rows = _stamp_layout(luma.shape[1])
    bits = _stamp_bits(frame_no, capture_ms)
    for i, bit in enumerate(bits):
        row, col = divmod(i, per_row)
        y, x = _MARGIN + row * _BLOCK, _MARGIN + col * _BLOCK
        luma[y : y + _BLOCK, x : x + _BLOCK] = _WHITE if bit else _BLACK
    return _MARGIN + rows * _BLOCK


def read_stamp(image: npt.NDArray[Any]) -> tuple[int, int]:
    """Read (frame_no, capture_time_ms) back from a decoded picture.

    Accepts a luma plane or a PyAV ``yuv420p`` ndarray (2-D; the stamp sits in the top rows,
    which are luma in both), or an RGB/BGR array (H, W, 3). Raises ValueError when the stamp
    is unreadable (CRC mismatch).
    """
    if image.ndim == 3:
        luma = image[..., :3].astype(np.float32).mean(axis=2)
    elif image.ndim == 2:
        luma = image.astype(np.float32)
    else:
        raise ValueError(f"unsupported image shape {image.shape}")
    per_row, _rows = _stamp_layout(luma.shape[1])
    value = 0
    inner = _BLOCK // 4  # sample the block centre, away from deblocking at the edges
    for i in range(STAMP_BITS):
        row, col = divmod(i, per_row)
        y, x = _MARGIN + row * _BLOCK + inner, _MARGIN + col * _BLOCK + inner
        block = luma[y : y + _BLOCK - 2 * inner, x : x + _BLOCK - 2 * inner]
        value = (value << 1) | int(block.mean() > (_BLACK + _WHITE) / 2)
    raw = value.to_bytes(STAMP_BITS // 8, "big")
    payload, crc = raw[:10], int.from_bytes(raw[10:], "big")
    if binascii.crc_hqx(payload, 0xFFFF) != crc:
        raise ValueError("stamp CRC mismatch: not a simulated-doorbell frame, or damaged")
    return int.from_bytes(payload[:4], "big"), int.from_bytes(payload[4:], "big")


def _clock_text(capture_ms: int) -> str:
    seconds, millis = divmod(capture_ms, 1000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{millis:03d}"


class _Background:
    """A diagonal gradient that scrolls a few pixels per frame, plus a little sensor noise.

    The scroll gives P-frames motion; the noise changes every frame, like a real sensor's,
    so the encoder actually spends the configured bitrate (a clean gradient compresses to
    half of it and would flatter every benchmark). Gradient and noise are computed once;
    each frame costs a gather and an add, not per-pixel arithmetic.
    """

    _NOISE_FRAMES = 4

    def __init__(self, width: int, height: int) -> None:
        span = width + height + 256
        # 48..175 leaves room for the noise (0..15) without clipping.
        self._ramp = ((np.arange(span) * 3) % 256).astype(np.uint8) // 2 + 48
        rows = np.arange(height)[:, None]
        cols = np.arange(width)[None, :]
        self._index = rows + cols
        rng = np.random.default_rng(1234)
        self._noise = rng.integers(0, 16, size=(self._NOISE_FRAMES, height, width), dtype=np.uint8)

    def luma(self, frame_no: int) -> Plane:
        offset = (frame_no * 4) % 256
        luma = np.asarray(self._ramp[self._index + offset], dtype=np.uint8)
        luma += self._noise[frame_no % self._NOISE_FRAMES]
        return luma


_backgrounds: dict[tuple[int, int], _Background] = {}


def render_frame(
    width: int, height: int, frame_no: int, capture_ms: int, label: str = ""
) -> npt.NDArray[np.uint8]:
    """Return a yuv420p picture as PyAV's (height * 3 / 2, width) ndarray layout."""
    if width % 2 or height % 2:
        raise ValueError("yuv420p needs even dimensions")
    background = _backgrounds.get((width, height))
    if background is None:
        background = _backgrounds.setdefault((width, height), _Background(width, height))
    luma = background.luma(frame_no)
    y = _draw_stamp(luma, frame_no, capture_ms) + _MARGIN
    scale = max(2, height // 90)
    lines = [_clock_text(capture_ms), f"#{frame_no:06d}"]
    if label:
        lines.append(label)
    for line in lines:
        # A dark box behind the digits keeps them legible on the bright parts of the gradient.
        box_w = text_width(line, scale) + 2 * scale
        luma[y - scale : y + 8 * scale, _MARGIN - scale : _MARGIN - scale + box_w] = _BLACK
        render_text(luma, line, _MARGIN, y, scale)
        y += 10 * scale
    chroma_w, chroma_h = width // 2, height // 2
    # Rows of U then V, each chroma row split in two halves of width/2, as PyAV packs them.
    u = np.full((chroma_h, chroma_w), 110, dtype=np.uint8)
    v = np.full((chroma_h, chroma_w), 150, dtype=np.uint8)
    chroma = np.concatenate([u.reshape(-1), v.reshape(-1)]).reshape(height // 2, width)
    return np.concatenate([luma, chroma])


def snapshot_jpeg(width: int, height: int, label: str) -> bytes:
    """A real JPEG of the test card (current time, frame 0) with ``label`` burned in."""
    now_ms = int(time.time() * 1000)
    picture = render_frame(width, height, 0, now_ms, label)
    frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    # The mjpeg encoder wants full-range (JPEG) 4:2:0; let swscale do the range conversion.
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 1)
    codec.options = {"q:v": "3"}
    frame = frame.reformat(format="yuvj420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in codec.encode(frame))
    data += b"".join(bytes(p) for p in codec.encode(None))
    return data
