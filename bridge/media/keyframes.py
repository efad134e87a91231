"""Keyframes on request: one place that asks a doorbell for a picture on behalf of every consumer.

Real WebRTC senders (libwebrtc, and many camera SDKs) send an IDR when a session starts and then
only when asked with RTCP PLI or FIR. So a consumer that needs a picture (a new viewer, one that
skipped ahead, the recorder, the MJPEG decoder, a snapshot) never waits for a keyframe nobody
asked for; it asks here. Requests are:

* coalesced: while one request is outstanding, further ones join it (20 viewers joining at once
  cost one PLI);
* rate-limited: libwebrtc ignores requests within 300 ms of the last keyframe it sent, so
  sending more often only wastes uplink; a request inside ``min_interval`` of the last one
  is sent when the interval ends;
* escalated: no keyframe ``answer_timeout`` after a PLI brings a FIR (some senders honour only
  one of the two), then PLI and FIR alternate every ``retry_interval``;
* watched: a sender that ignores requests for ``unanswered_after`` is reported once in the log
  and in the stream's stats as "not answered"; the hub reconnects the session when it stays so.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Literal, TypedDict

from bridge.clock import SYSTEM_CLOCK, Clock, Timer

__all__ = ["KeyframeKind", "KeyframeRequestStats", "KeyframeRequests"]

_LOGGER = logging.getLogger(__name__)

KeyframeKind = Literal["pli", "fir"]
Sender = Callable[[KeyframeKind], None]


class KeyframeRequestStats(TypedDict):
    """Requests sent and answered, in a stream's entry of ``/api/streams``."""

    pli: int
    fir: int
    coalesced: int
    answered: int
    answer_ms_p50: float | None  # median time to the keyframe; None before the first answer


class KeyframeRequests:
    """Keyframe requests of one stream (see the module docstring)."""

    def __init__(
        self,
        name: str,
        send: Sender,
        *,
        answer_timeout: float = 0.5,
        min_interval: float = 0.3,
        retry_interval: float = 1.0,
        unanswered_after: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.answer_timeout = answer_timeout
        self.min_interval = min_interval
        self.retry_interval = retry_interval
        self.unanswered_after = unanswered_after
        self.sent: dict[KeyframeKind, int] = {"pli": 0, "fir": 0}
        self.coalesced = 0  # requests that joined one already outstanding
        self.answered = 0
        self.status: Literal["ok", "waiting", "not answered"] = "ok"
        self._send = send
        self._clock = clock
        self._pending_since: float | None = None  # first unanswered request of this round
        self._round_sent: float | None = None  # when this round's first request went out
        self._last_sent: float | None = None
        self._next: KeyframeKind = "pli"
        self._timer: Timer | None = None
        self._answer_ms: deque[float] = deque(maxlen=32)
        # Said once per session: a fixed-GOP camera that ignores requests would otherwise flip
        # between "not answered" and answered at every GOP.
        self._warned = False

    # -- events ----------------------------------------------------------------------------------

    def request(self) -> bool:
        """Ask for a keyframe; False when the request joined one already on its way."""
        if self._pending_since is not None:
            self.coalesced += 1
            return False
        now = self._clock.now()
        self._pending_since = now
        self.status = "waiting" if self.status == "ok" else self.status
        wait = 0.0 if self._last_sent is None else self._last_sent + self.min_interval - now
        if wait > 0:
            self._arm(wait)  # sent when the interval ends; nothing is lost meanwhile
        else:
            self._fire()
        return True

    def keyframe(self) -> None:
        """A keyframe arrived (asked for or not): the outstanding request is answered."""
        if self._pending_since is None:
            return
        self._answer_ms.append((self._clock.now() - self._pending_since) * 1000)
        self.answered += 1
        if self.status == "not answered":
            _LOGGER.debug("stream %s: a keyframe came after all", self.name)
        self._reset()

    def reset(self) -> None:
        """A new session starts: forget the outstanding request (the session opens with one)."""
        self._reset()
        self._last_sent = None
        self._warned = False

    def unanswered_for(self) -> float:
        """Seconds the outstanding request has gone unanswered (0 when none is)."""
        if self._round_sent is None:
            return 0.0
        return max(0.0, self._clock.now() - self._round_sent)

    def stats(self) -> KeyframeRequestStats:
        """Counters for /api/streams."""
        answers = sorted(self._answer_ms)
        return {
            "pli": self.sent["pli"],
            "fir": self.sent["fir"],
            "coalesced": self.coalesced,
            "answered": self.answered,
            "answer_ms_p50": round(answers[len(answers) // 2], 1) if answers else None,
        }

    # -- internals ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._pending_since = None
        self._round_sent = None
        self._next = "pli"
        self.status = "ok"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._clock.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._pending_since is None:
            return
        now = self._clock.now()
        kind = self._next
        # PLI first; a FIR if that brought nothing, then alternate: a sender may honour one only.
        self._next = "fir" if kind == "pli" else "pli"
        self.sent[kind] += 1
        self._last_sent = now
        first = self._round_sent is None
        if first:
            self._round_sent = now
        waited = self.unanswered_for()
        if waited >= self.unanswered_after and self.status != "not answered":
            self.status = "not answered"
            log = _LOGGER.debug if self._warned else _LOGGER.warning
            self._warned = True
            log(
                "stream %s: the doorbell has not answered keyframe requests for %.1f s "
                "(PLI %d, FIR %d); consumers with a picture keep it",
                self.name,
                waited,
                self.sent["pli"],
                self.sent["fir"],
            )
        try:
            self._send(kind)
        except Exception:
            _LOGGER.exception("stream %s: sending a keyframe request failed", self.name)
        self._arm(self.answer_timeout if first else self.retry_interval)
