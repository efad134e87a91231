"""The ``[talk]`` options: how long a played message may be, and how long waking may take."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.options import MIB, bounds

__all__ = ["TalkOptions"]


@dataclass(frozen=True)
class TalkOptions:
    """Talking to the visitor: ``POST /api/talk``, the CLI's ``talk`` and rules' ``say``."""

    # Longer audio is refused (HTTP 413) before anything is played.
    max_seconds: float = field(default=60.0, metadata=bounds(1, 3600))
    # How long a talk may wait for a sleeping doorbell's live call to start.
    wake_timeout: float = field(default=20.0, metadata=bounds(1, 120))

    @property
    def max_body_bytes(self) -> int:
        """The largest audio body accepted (HTTP 413 beyond), from ``max_seconds``.

        Allows 48 kHz stereo 32-bit WAV (384 kB a second), the largest a phone or an editor
        writes, plus 1 MiB of headers; capped at 256 MiB, which is all held in memory.
        """
        return min(int(self.max_seconds * 384_000) + MIB, 256 * MIB)
