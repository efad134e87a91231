"""Why talking to a doorbell failed, each with the HTTP status it maps to at the route.

    TalkError
    ├── TalkBusy           someone is already talking to this doorbell       -> 409
    ├── TalkUnavailable    the doorbell is offline, or its stream cannot start -> 503
    ├── TalkUnsupported    the doorbell answered without audio it can receive -> 501
    ├── AudioUndecodable   the audio given is not audio PyAV can decode      -> 415
    └── AudioTooLong       the audio is longer than talk.max_seconds          -> 413

``TalkUnsupported`` is 501 (Not Implemented): the doorbell cannot take audio at all, so retrying
never helps, unlike 409 (busy) which clears once the other talker stops.
"""

from __future__ import annotations

from bridge.errors import BridgeError

__all__ = [
    "AudioTooLong",
    "AudioUndecodable",
    "TalkBusy",
    "TalkError",
    "TalkUnavailable",
    "TalkUnsupported",
]


class TalkError(BridgeError):
    """Talking to a doorbell failed; ``status`` is the HTTP status the API answers with."""

    status: int = 500


class TalkBusy(TalkError):
    """Someone is already talking to this doorbell: one talker at a time."""

    status = 409

    def __init__(self, stream: str, talker: str) -> None:
        super().__init__(f"someone is already talking to {stream} ({talker})")
        self.stream = stream
        self.talker = talker


class TalkUnavailable(TalkError):
    """The doorbell cannot be reached now (offline, unreachable, the live call failed)."""

    status = 503
    transient = True


class TalkUnsupported(TalkError):
    """The doorbell's answer has no audio it receives: talk cannot work with this doorbell."""

    status = 501


class AudioUndecodable(TalkError):
    """The audio given could not be decoded; the message names the problem."""

    status = 415


class AudioTooLong(TalkError):
    """The audio lasts longer than allowed."""

    status = 413

    def __init__(self, seconds: float, max_seconds: float, why: str = "") -> None:
        super().__init__(
            f"audio too large: {why}"
            if why
            else f"audio longer than talk.max_seconds = {max_seconds:g} s "
            f"(at least {seconds:.1f} s)"
        )
        self.seconds = seconds
        self.max_seconds = max_seconds
