"""Keyframe requests: PLI then FIR, coalescing, the rate limit, and 'not answered' said once."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.media.keyframes import KeyframeRequests


def requests(sent: list[str], **timing: float) -> KeyframeRequests:
    timing = {"answer_timeout": 0.05, "retry_interval": 0.05, "unanswered_after": 0.12} | timing
    return KeyframeRequests("front-door", sent.append, **timing)


async def test_pli_then_fir_then_alternating_until_answered() -> None:
    sent: list[str] = []
    keyframes = requests(sent)
    assert keyframes.request()
    assert sent == ["pli"]
    assert not keyframes.request()  # joins the one on its way
    await asyncio.sleep(0.08)
    assert sent == ["pli", "fir"]
    await asyncio.sleep(0.06)
    assert sent == ["pli", "fir", "pli"]
    keyframes.keyframe()
    await asyncio.sleep(0.12)
    assert sent == ["pli", "fir", "pli"]  # answered: nothing more
    assert keyframes.stats()["answered"] == 1
    assert keyframes.coalesced == 1
    assert keyframes.status == "ok"


async def test_requests_closer_than_the_minimum_interval_wait_for_it() -> None:
    sent: list[str] = []
    keyframes = requests(sent, min_interval=0.1, answer_timeout=1.0)
    keyframes.request()
    keyframes.keyframe()
    keyframes.request()  # answered already, but the doorbell would ignore another so soon
    assert sent == ["pli"]
    await asyncio.sleep(0.15)
    assert sent == ["pli", "pli"]
    keyframes.keyframe()


async def test_not_answered_is_logged_once_per_session(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[str] = []
    keyframes = requests(sent, min_interval=0.0)
    with caplog.at_level(logging.WARNING, logger="bridge.media.keyframes"):
        for _ in range(3):  # a fixed-GOP camera that ignores requests: answered by its GOP
            keyframes.request()
            await asyncio.sleep(0.3)
            assert keyframes.status == "not answered"
            assert keyframes.unanswered_for() >= 0.12
            keyframes.keyframe()
            assert keyframes.status == "ok"
            await asyncio.sleep(0.06)
    warnings = [r for r in caplog.records if "not answered" in r.getMessage()]
    assert len(warnings) == 1
    keyframes.reset()
    assert keyframes.unanswered_for() == 0.0
