"""The tones a SkyBell plays on request (the seed's play-tone call, its ``file_name`` enum).

Kept apart from the client so the rules parser can check ``{ tone = "2.wav" }`` at start without
loading the HTTP client, and the simulated cloud refuses what the real one would.
"""

from __future__ import annotations

from typing import Final

__all__ = ["TONES"]

TONES: Final = (
    "1.wav",
    "2.wav",
    "3.wav",
    "4.wav",
    "5.wav",
    "8.wav",
    "9.wav",
    "cartoon-melodic-bell.wav",
    "home.wav",
    "modern.wav",
    "onemomentplease.wav",
    "single-press.wav",
    "wifi_ring.wav",
    "user.wav",  # a tone the owner uploaded
)
