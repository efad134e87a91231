"""The JSON API has the shape its TypedDicts declare: a key added to or dropped from a body in
code, without the TypedDict changing too, fails here.

One bridge against the simulator is brought to a state where every list has an entry and every
optional key shows up somewhere (a press that a rule acts on and that starts a clip, a WebRTC
viewer, a snapshot, UDP and polling on); then each body is walked alongside its TypedDict: every
required key present, no key undeclared, values of the declared JSON type, and every declared
key seen at least once across the run.
"""

from __future__ import annotations

import asyncio
import json
import socket
import types
import typing
from typing import Any, Literal, TypedDict, Union

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from bridge.automation.engine import AutomationStats
from bridge.events.log import EventPageDict
from bridge.events.service import EventStats
from bridge.redact import Secret
from bridge.routes.clips import ClipEntry, ClipList, RecordingList
from bridge.routes.common import DEVICES
from bridge.routes.streams import StreamEntry, StreamsBody
from bridge.sim.world import SimWorld
from bridge.skybell.payloads import EventDict
from bridge.skybell.triggers import add_webhook_triggers, webhook_url

from .serve_util import BridgeFactory, get_json

SECRET = "hook-secret"
RULES = """
[[rules]]
name = "porch light"
on = ["doorbell"]
devices = ["front-door"]
do = [{ scene = "Porch light on" }]
"""


class Shapes:
    """Checks JSON values against type hints and remembers which keys of each TypedDict it saw."""

    def __init__(self) -> None:
        self.seen: dict[type, set[str]] = {}

    def check(self, value: Any, hint: Any, where: str) -> None:
        """Assert that ``value`` (parsed JSON) fits ``hint``; ``where`` names it in failures."""
        if hint is Any:
            return
        if typing.is_typeddict(hint):
            self._typeddict(value, hint, where)
            return
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (Union, types.UnionType):
            self._union(value, args, where)
        elif origin is Literal:
            assert value in args, f"{where}: {value!r} is none of {args}"
        elif origin is list:
            assert isinstance(value, list), f"{where}: expected a list, got {value!r}"
            for i, item in enumerate(value):
                self.check(item, args[0], f"{where}[{i}]")
        elif origin is dict:
            assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
            for key, item in value.items():
                self.check(item, args[1], f"{where}[{key!r}]")
        else:
            self._scalar(value, hint, where)

    def _typeddict(self, value: Any, hint: Any, where: str) -> None:
        for key, annotation in hint.__annotations__.items():
            # Under postponed annotations Python 3.11 reads NotRequired[...] as required;
            # optional keys go in a total=False base class instead.
            text = getattr(annotation, "__forward_arg__", str(annotation))
            assert "Required[" not in text, (
                f"{hint.__qualname__}.{key}: use a total=False base, not {text}"
            )
        assert isinstance(value, dict), f"{where}: expected an object, got {value!r}"
        keys = set(value)
        declared = hint.__required_keys__ | hint.__optional_keys__
        missing = hint.__required_keys__ - keys
        extra = keys - declared
        assert not missing, f"{where}: {sorted(missing)} missing ({hint.__qualname__})"
        assert not extra, f"{where}: {sorted(extra)} not declared in {hint.__qualname__}"
        self.seen.setdefault(hint, set()).update(keys)
        hints = typing.get_type_hints(hint)
        for key in keys:
            self.check(value[key], hints[key], f"{where}.{key}")

    def _union(self, value: Any, arms: tuple[Any, ...], where: str) -> None:
        if value is None:
            assert type(None) in arms, f"{where}: null where {arms} is declared"
            return
        real = [arm for arm in arms if arm is not type(None)]
        if len(real) == 1:
            self.check(value, real[0], where)
            return
        for arm in real:  # a union of scalars: any arm that fits will do
            try:
                Shapes().check(value, arm, where)
            except AssertionError:
                continue
            return
        raise AssertionError(f"{where}: {value!r} fits none of {real}")

    @staticmethod
    def _scalar(value: Any, hint: Any, where: str) -> None:
        if hint is float:  # a float key may hold an int (a stream's uptime is 0 while idle)
            ok = type(value) in (int, float)
        elif hint in (int, bool, str):
            ok = type(value) is hint  # bool is an int to Python, not to the page
        elif hint is type(None):
            ok = value is None
        else:
            raise AssertionError(f"{where}: no check for {hint!r}")
        assert ok, f"{where}: {value!r} is not {hint.__name__}"

    def never_seen(self) -> dict[str, list[str]]:
        """Declared keys absent from every instance checked, per TypedDict."""
        unseen = {
            td.__qualname__: sorted((td.__required_keys__ | td.__optional_keys__) - keys)
            for td, keys in self.seen.items()
        }
        return {name: keys for name, keys in unseen.items() if keys}


class _Inner(TypedDict):
    n: int


class _Outer(TypedDict):
    inner: _Inner
    items: list[_Inner]


def test_the_check_catches_undeclared_missing_and_mistyped_keys() -> None:
    good = {"inner": {"n": 1}, "items": [{"n": 2}]}
    Shapes().check(good, _Outer, "good")
    for bad, message in (
        ({"inner": {"n": 1}, "items": [], "more": 1}, r"\['more'\] not declared"),
        ({"inner": {"n": 1}}, r"\['items'\] missing"),
        ({"inner": {"n": 1}, "items": [{"n": 2, "m": 3}]}, r"bad\.items\[0\]"),
        ({"inner": {"n": "1"}, "items": []}, r"bad\.inner\.n: '1' is not int"),
    ):
        with pytest.raises(AssertionError, match=message):
            Shapes().check(bad, _Outer, "bad")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _next_event(feed: aiohttp.ClientResponse) -> Any:
    """The data of the first event on an open ``/api/events/stream``."""
    async with asyncio.timeout(10):
        async for raw in feed.content:
            line = raw.decode().strip()
            if line.startswith("data:"):
                return json.loads(line[5:])
    raise AssertionError("the feed ended without an event")


async def _until(url: str, ready: typing.Callable[[Any], bool]) -> Any:
    for _ in range(100):
        _, body = await get_json(url)
        if ready(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never got there: {body}")


async def test_every_body_has_the_declared_keys(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge(
        RULES,
        SKYBELL_BRIDGE_EVENTS_WEBHOOK_SECRET=SECRET,
        SKYBELL_BRIDGE_EVENTS_UDP_ENABLED="true",
        SKYBELL_BRIDGE_EVENTS_UDP_HOST="127.0.0.1",
        SKYBELL_BRIDGE_EVENTS_UDP_PORT=str(_free_udp_port()),
        SKYBELL_BRIDGE_RECORD_PREROLL="0",
        # Long enough that the clip is still being recorded when /api/record is read.
        SKYBELL_BRIDGE_RECORD_POSTROLL="30",
    )
    api = bridge.http_url + "api/"
    front = [d for d in bridge.app[DEVICES] if d.slug == "front-door"]
    await add_webhook_triggers(
        bridge.client, front, webhook_url(bridge.http_url), secret=Secret(SECRET)
    )
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    shapes = Shapes()
    try:
        async with aiohttp.ClientSession() as http, http.get(api + "events/stream") as feed:
            # The press: the webhook brings the event, the rule runs its scene (a SwitchBot
            # call), and the recorder starts a clip.
            await world.press("Front Door")
            shapes.check(await _next_event(feed), EventDict, "events/stream")
            # A WebRTC viewer and a snapshot fill the stream's webrtc and mjpeg entries.
            async with http.post(
                api + "webrtc?src=front-door",
                data=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp"},
            ) as resp:
                assert resp.status == 201
            async with http.get(api + "frame.jpeg?src=front-door") as resp:
                assert resp.status == 200

            clips = await _until(api + "clips", lambda body: bool(body["clips"]))
            events = await _until(
                api + "events", lambda body: bool(body["events"] and body["events"][0]["results"])
            )
            automation = await _until(
                api + "automation", lambda body: bool(body["rules"][0]["last_results"])
            )
            _, streams = await get_json(api + "streams")
            _, one = await get_json(api + "streams?src=front-door")
            _, clip = await get_json(api + f"clips/{clips['clips'][0]['id']}")
            _, recording = await get_json(api + "record")
            _, event_stats = await get_json(api + "events/stats")
    finally:
        await pc.close()

    assert set(streams) == {"front-door", "back-garden"}
    assert streams["front-door"]["webrtc"]["viewers"], "no WebRTC viewer to check"
    assert recording["recording"], "no clip being recorded to check"
    for body, hint, where in (
        (streams, StreamsBody, "streams"),
        (one, StreamEntry, "streams?src="),
        (clips, ClipList, "clips"),
        (clip, ClipEntry, "clips/{id}"),
        (recording, RecordingList, "record"),
        (events, EventPageDict, "events"),
        (automation, AutomationStats, "automation"),
        (event_stats, EventStats, "events/stats"),
    ):
        shapes.check(body, hint, where)
    # The other half of "equals": no declared key that the bridge never gives.
    assert shapes.never_seen() == {}
