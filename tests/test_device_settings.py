"""Doorbell settings (issue 15, part 3): the table's validation, and the HTTP API against a
whole bridge and the simulated cloud, which must store what it is sent and refuse what the
seed calls invalid.

Validation is property-tested: any JSON-ish body gives a cloud body or a one-line
SettingsError, never another exception; every valid body is one the simulated cloud accepts,
and reads back as what was asked.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import SettingsError
from bridge.routes.devices import DeviceSettingsBody, RebootBody
from bridge.service import Bridge
from bridge.sim.device_settings import default_settings, settings_problem
from bridge.sim.world import SimWorld
from bridge.skybell.models import Device
from bridge.skybell.settings import (
    CHIME_TONES,
    LED_DEFAULT_COLOUR,
    SETTINGS,
    Setting,
    colour_to_rgb,
    controls,
    extract_settings,
    rgb_to_colour,
    validate_settings,
)

from .serve_util import FRONT, BridgeFactory, basic, get_json
from .test_api_shapes import Shapes

BACK = "be0e3ef1-cf12-4350-bdc2-ce5266bdb838"

# -- validation -------------------------------------------------------------------------------

JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KEYS = st.sampled_from(sorted(SETTINGS)) | st.text(max_size=12)


def _value(setting: Setting) -> st.SearchStrategy[Any]:
    """Valid user-facing values of one setting."""
    if setting.kind == "bool":
        return st.booleans()
    if setting.kind == "int":
        return st.integers(setting.minimum, setting.maximum)
    if setting.kind == "enum":
        return st.sampled_from(setting.options)
    hex_colour = st.integers(0, 0xFFFFFF).map(lambda n: f"#{n:06x}")
    return hex_colour | hex_colour.map(str.upper)


VALID = st.fixed_dictionaries(
    {}, optional={k: _value(s) for k, s in SETTINGS.items() if k not in ("led", "led_color")}
).filter(bool)


def _device(cloud_settings: dict[str, Any]) -> Device:
    return Device.from_api({"device_id": FRONT, "name": "Front Door", "settings": cloud_settings})


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(KEYS, JSONISH, max_size=5) | JSONISH)
def test_any_jsonish_body_is_a_cloud_body_or_one_line_settings_error(body: Any) -> None:
    cloud: dict[str, Any] | None = None
    failure: SettingsError | None = None
    try:
        cloud = validate_settings(body)
    except SettingsError as err:
        failure = err
    if failure is not None:
        text = str(failure)
        assert "\n" not in text
        assert "\r" not in text
        assert 0 < len(text) < 400
        assert text.startswith(failure.key + ": ")
        return
    assert isinstance(body, dict)
    assert body
    assert cloud
    assert all(isinstance(k, str) for k in cloud)
    assert settings_problem(cloud) is None  # the simulated cloud takes it too


@settings(max_examples=300)
@given(VALID)
def test_valid_bodies_reach_the_cloud_and_read_back_as_asked(partial: dict[str, Any]) -> None:
    cloud = validate_settings(partial)
    assert settings_problem(cloud) is None
    assert set(cloud) == {SETTINGS[k].cloud[0] for k in partial}
    stored = {**default_settings(), **cloud}
    got = extract_settings(_device(stored))
    assert {k: got[k] for k in partial} == partial


@given(st.integers(0, 0xFFFFFF), st.booleans())
def test_colours_normalise_and_convert(n: int, upper: bool) -> None:
    colour = f"#{n:06X}" if upper else f"#{n:06x}"
    body = validate_settings({"led_color": colour})
    assert body == {"led_color": colour.upper()}
    assert rgb_to_colour(*colour_to_rgb(colour)) == colour.upper()


@pytest.mark.parametrize(
    ("partial", "message"),
    [
        ({"led_color": "red"}, 'led_color: expected a colour #RRGGBB, got "red"'),
        ({"led_color": "#12345"}, "led_color: expected a colour #RRGGBB"),
        ({"led_color": "#GG0000"}, "led_color: expected a colour #RRGGBB"),
        ({"brightness": 1001}, "brightness: 1001 is out of range 0 to 1000"),
        ({"motion_sensitivity": -1}, "motion_sensitivity: -1 is out of range 0 to 1000"),
        ({"motion_sensitivity": 2.5}, "motion_sensitivity: expected a whole number, got 2.5"),
        ({"motion_sensitivity": True}, "motion_sensitivity: expected a whole number, got true"),
        ({"motion_detection": "on"}, 'motion_detection: expected true or false, got "on"'),
        ({"indoor_chime": 1}, "indoor_chime: expected true or false, got 1"),
        ({"chime_file": "6.wav"}, 'chime_file: "6.wav" is not one of: 1.wav'),
        ({"outdoor_chime_volume": 1}, "outdoor_chime_volume: 1 is not one of: low, medium, high"),
        ({"volume": 1}, '"volume": unknown setting; known: led, led_color'),
        ({"led": False, "led_color": "#FF0000"}, "led: false contradicts led_color #FF0000"),
        ({"led": True, "led_color": "#000000"}, "led_color: #000000 is the LED off"),
        ({}, "settings: no settings given"),
        (["led"], "settings: expected a JSON object"),
    ],
)
def test_bad_input_names_the_key(partial: Any, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        validate_settings(partial)
    assert str(caught.value).startswith(message)


def test_messages_stay_short_whatever_the_value() -> None:
    huge = 10**4000  # json.loads reads integers up to 4300 digits
    with pytest.raises(SettingsError) as caught:
        validate_settings({"brightness": huge})
    assert (
        str(caught.value)
        == "brightness: 1000000000000000000000000000000000000... is out of range 0 to 1000"
    )
    with pytest.raises(SettingsError) as caught:
        validate_settings({"led_color": "#" + "f" * 10_000})
    assert len(str(caught.value)) < 100


def test_led_on_off_is_the_colour() -> None:
    assert validate_settings({"led": False}) == {"led_color": "#000000"}
    assert validate_settings({"led": True}) == {"led_color": LED_DEFAULT_COLOUR}
    # On keeps a colour the LED has, and a colour given with it wins.
    assert validate_settings({"led": True}, {"led_color": "#FF00FF"}) == {"led_color": "#FF00FF"}
    assert validate_settings({"led": True}, {"led_color": "#000000"}) == {"led_color": "#00FF00"}
    assert validate_settings({"led": True, "led_color": "#0055cc"}) == {"led_color": "#0055CC"}
    assert extract_settings(_device({"led_color": "#000000"}))["led"] is False
    assert extract_settings(_device({"led_color": "#00ff00"}))["led"] is True


def test_extract_reads_the_seed_device_object_and_defaults() -> None:
    # The settings object of the seed's GET /devices/{id}/ example.
    seed = {
        "led_color": "#00ff00",
        "brightness": 0,
        "chime_file": "user.wav",
        "indoor_chime": True,
        "digital_chime": False,
        "image_quality": 0,
        "outdoor_chime": True,
        "skybell_chime": True,
        "speaker_volume": 0,
        "motion_detection": False,
        "motion_sensitivity": 50,
        "debug_motion_detect": False,
        "outdoor_chime_volume": 0,
    }
    assert extract_settings(_device(seed)) == {
        "led": True,
        "led_color": "#00FF00",
        "brightness": 0,
        "indoor_chime": True,
        "digital_chime": False,
        "outdoor_chime": True,
        "skybell_chime": True,
        "chime_file": "user.wav",
        "outdoor_chime_volume": "low",
        "motion_detection": False,
        "motion_sensitivity": 50,
        "debug_motion_detect": False,
        "image_quality": "480p",
        "speaker_volume": "low",
    }
    # A field the cloud leaves out is its documented default; one no control can show is None.
    odd = extract_settings(_device({"outdoor_chime_volume": 3, "led_color": "green"}))
    assert odd["outdoor_chime_volume"] is None
    assert odd["led_color"] is None
    assert odd["led"] is None
    assert odd["chime_file"] == "1.wav"
    assert odd["motion_sensitivity"] == 50


def test_table_describes_every_control() -> None:
    described = {c["key"]: c for c in controls()}
    assert list(described) == list(SETTINGS)
    assert described["chime_file"]["options"] == list(CHIME_TONES)
    assert (described["motion_sensitivity"]["min"], described["motion_sensitivity"]["max"]) == (
        0,
        1000,
    )
    assert {c["kind"] for c in described.values()} == {"bool", "int", "enum", "colour"}
    assert all(c["label"] and c["group"] for c in described.values())


# -- HTTP -------------------------------------------------------------------------------------


async def _post(url: str, **kwargs: Any) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as http, http.post(url, **kwargs) as resp:
        text = await resp.text()
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = None
        return resp.status, body, text


def _url(bridge: Bridge, stream: str, what: str = "settings") -> str:
    return f"{bridge.http_url}api/devices/{stream}/{what}"


async def test_get_shows_the_cloud_settings_and_the_controls(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge()
    status, body = await get_json(_url(bridge, "front-door"))
    assert status == 200
    Shapes().check(body, DeviceSettingsBody, "settings")
    assert (body["stream"], body["id"], body["device"]) == ("front-door", FRONT, "Front Door")
    assert body["settings"]["motion_detection"] is True
    assert body["settings"]["image_quality"] == "480p"  # serve_util's world sets 0
    assert body["settings"]["led_color"] == "#00FF00"
    assert [c["key"] for c in body["controls"]] == list(SETTINGS)
    # The device id works as well as the stream name.
    status, by_id = await get_json(_url(bridge, BACK))
    assert (status, by_id["device"]) == (200, "Back Garden")


CHANGES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"led_color": "#ff00ff"}, {"led_color": "#FF00FF"}),
    ({"led": False}, {"led_color": "#000000"}),
    ({"led": True}, {"led_color": "#00FF00"}),
    ({"brightness": 750}, {"brightness": 750}),
    ({"indoor_chime": False}, {"indoor_chime": False}),
    ({"digital_chime": True}, {"digital_chime": True}),
    ({"outdoor_chime": False}, {"outdoor_chime": False}),
    ({"skybell_chime": False}, {"skybell_chime": False}),
    ({"chime_file": "modern.wav"}, {"chime_file": "modern.wav"}),
    ({"outdoor_chime_volume": "high"}, {"outdoor_chime_volume": 2}),
    ({"motion_detection": False}, {"motion_detection": False}),
    ({"motion_sensitivity": 400}, {"motion_sensitivity": 400}),
    ({"debug_motion_detect": True}, {"debug_motion_detect": True}),
    ({"image_quality": "720p low"}, {"image_quality": 1}),
    ({"speaker_volume": "medium"}, {"speaker_volume": 1}),
]


async def test_each_control_is_a_round_trip_to_the_simulated_cloud(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    assert {k for change, _ in CHANGES for k in change} == set(SETTINGS)
    bridge = await make_bridge()
    stored = world.cloud.devices[FRONT].settings
    for change, cloud in CHANGES:
        status, body, text = await _post(_url(bridge, "front-door"), json=change)
        assert status == 200, text
        Shapes().check(body, DeviceSettingsBody, "settings")
        assert {k: stored[k] for k in cloud} == cloud  # what the cloud stored
        expected = {k: v.upper() if k == "led_color" else v for k, v in change.items()}
        assert {k: body["settings"][k] for k in change} == expected  # what it confirmed
        _, again = await get_json(_url(bridge, "front-door"))
        assert again["settings"] == body["settings"]
    # The other doorbell was left alone.
    assert "chime_file" not in world.cloud.devices[BACK].settings
    # Several at once, with the LED turned on in a colour.
    change = {"led": True, "led_color": "#0055CC", "motion_sensitivity": 3.0}
    status, body, _ = await _post(_url(bridge, "front-door"), json=change)
    assert status == 200
    assert (stored["led_color"], stored["motion_sensitivity"]) == ("#0055CC", 3)
    assert body["settings"]["led"] is True


async def test_led_on_keeps_its_colour(make_bridge: BridgeFactory, world: SimWorld) -> None:
    bridge = await make_bridge()
    await _post(_url(bridge, "front-door"), json={"led_color": "#123456"})
    status, body, _ = await _post(_url(bridge, "front-door"), json={"led": True})
    assert status == 200
    assert body["settings"]["led_color"] == "#123456"
    assert world.cloud.devices[FRONT].settings["led_color"] == "#123456"


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        ('{"led_color": "purple"}', "application/json", "led_color: expected a colour #RRGGBB"),
        ('{"led_color": "#ff00f"}', "application/json", "led_color: expected a colour #RRGGBB"),
        ('{"motion_sensitivity": 1001}', "application/json", "motion_sensitivity: 1001 is out"),
        ('{"brightness": -5}', "application/json", "brightness: -5 is out of range"),
        ('{"motion_sensitivity": "50"}', "application/json", "motion_sensitivity: expected a"),
        ('{"chime_file": "loud.wav"}', "application/json", 'chime_file: "loud.wav" is not one'),
        ('{"volume": 2}', "application/json", '"volume": unknown setting'),
        ('{"device_name": "Hacked"}', "application/json", '"device_name": unknown setting'),
        ("{}", "application/json", "settings: no settings given"),
        ('["led"]', "application/json", "settings: expected a JSON object"),
        ('"on"', "application/json", "settings: expected a JSON object"),
        ("ON", "text/plain", "body is not JSON"),
        ("{led: true}", "application/json", "body is not JSON"),
        ("", "application/json", "expected a JSON object of settings"),
        ("[" * 100_000, "application/json", "body is not JSON"),
        ('{"brightness": NaN}', "application/json", "brightness: expected a whole number"),
    ],
)
async def test_bad_input_is_a_one_line_400_and_changes_nothing(
    make_bridge: BridgeFactory, world: SimWorld, data: str, content_type: str, message: str
) -> None:
    bridge = await make_bridge()
    before = dict(world.cloud.devices[FRONT].settings)
    calls = len(world.cloud.calls)
    status, body, text = await _post(
        _url(bridge, "front-door"), data=data, headers={"Content-Type": content_type}
    )
    assert status == 400, text
    assert "\n" not in text
    assert body["error"].startswith(message), body
    assert world.cloud.devices[FRONT].settings == before
    assert not [c for c in world.cloud.calls[calls:] if c[0] == "POST"]  # never sent


async def test_unknown_stream_is_404(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    status, body = await get_json(_url(bridge, "side-gate"))
    assert status == 404
    assert body["error"] == "unknown stream 'side-gate'"
    assert body["streams"] == ["back-garden", "front-door"]
    for what in ("settings", "reboot"):
        status, body, _ = await _post(_url(bridge, "side-gate", what), json={"led": True})
        assert status == 404


async def test_a_doorbell_that_does_not_answer_is_a_clear_504(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge()
    world.cloud.faults.unreachable.add(FRONT)
    status, body, text = await _post(_url(bridge, "front-door"), json={"indoor_chime": False})
    assert status == 504, text
    assert body["error"].startswith("doorbell did not answer: Front Door did not answer"), body
    assert "HTTP 599" in body["error"]
    assert "\n" not in text
    assert "indoor_chime" not in world.cloud.devices[FRONT].settings
    status, body, _ = await _post(_url(bridge, "front-door", "reboot"))
    assert status == 504
    assert body["error"].startswith("doorbell did not answer")
    # Reading the settings needs only the cloud, so it still works; and the other doorbell too.
    status, _ = await get_json(_url(bridge, "front-door"))
    assert status == 200
    status, _, _ = await _post(_url(bridge, "back-garden"), json={"indoor_chime": False})
    assert status == 200
    # Once it answers again the same change goes through.
    world.cloud.faults.unreachable.clear()
    status, body, _ = await _post(_url(bridge, "front-door"), json={"indoor_chime": False})
    assert (status, body["settings"]["indoor_chime"]) == (200, False)


async def test_cloud_failures_are_502_and_a_cloud_refusal_says_why(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge()
    world.cloud.faults.server_errors = 1
    world.cloud.faults.server_error_status = 500
    status, body, _ = await _post(_url(bridge, "front-door"), json={"motion_detection": False})
    assert status == 502
    assert body["error"].startswith("the SkyBell cloud refused: HTTP 500")


async def test_reboot(make_bridge: BridgeFactory, world: SimWorld) -> None:
    bridge = await make_bridge()
    status, body, _ = await _post(_url(bridge, "front-door", "reboot"))
    assert status == 200
    Shapes().check(body, RebootBody, "reboot")
    assert body["message"] == "reboot sent: Front Door restarts in 10 to 60 s"
    assert ("POST", f"/api/v5/devices/{FRONT}/reboot/") in world.cloud.calls
    async with (
        aiohttp.ClientSession() as http,
        http.get(_url(bridge, "front-door", "reboot")) as resp,
    ):
        assert resp.status == 405  # a reboot is never a GET a link or a prefetch could make


async def test_changes_pass_the_origin_guard_and_the_password(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    bridge = await make_bridge(
        SKYBELL_BRIDGE_SERVER_USERNAME="admin", SKYBELL_BRIDGE_SERVER_PASSWORD="pw-9753"
    )
    url = _url(bridge, "front-door")
    auth = basic("admin", "pw-9753")
    assert (await get_json(url))[0] == 401
    assert (await _post(url, json={"indoor_chime": False}))[0] == 401
    assert (await _post(url, json={"indoor_chime": False}, headers=basic("admin", "no")))[0] == 401
    evil = {**auth, "Origin": "http://evil.example"}
    assert (await _post(url, json={"indoor_chime": False}, headers=evil))[0] == 403
    assert (await _post(_url(bridge, "front-door", "reboot"), headers=evil))[0] == 403
    assert "indoor_chime" not in world.cloud.devices[FRONT].settings
    assert not [c for c in world.cloud.calls if c[1].endswith("/reboot/")]
    same = {**auth, "Origin": bridge.http_url.rstrip("/")}
    status, body, _ = await _post(url, json={"indoor_chime": False}, headers=same)
    assert (status, body["settings"]["indoor_chime"]) == (200, False)


async def test_simulated_cloud_refuses_what_the_seed_calls_invalid(world: SimWorld) -> None:
    base = f"{world.base_url}/api/v5/devices/{FRONT}/settings/"
    headers = {"x-skybell-user-api-key": world.cloud.api_key}
    refused = [
        ({"led_color": "pink"}, "led_color must be a hexadecimal RGB value"),
        ({"chime_file": "6.wav"}, "chime_file must be one of"),
        ({"outdoor_chime_volume": 50}, "4-99 is for SkyBell Chime devices"),
        ({"motion_sensitivity": 1001}, "motion_sensitivity must be a number from 0 to 1000"),
        ({"indoor_chime": "yes"}, "indoor_chime must be true or false"),
        ({"speaker_volume": 3}, "speaker_volume must be a number from 0 to 2"),
        ({"motion_zone_config": {"x": 3, "y": 2, "zones": [], "threshold": 1}}, "motion_zone"),
        ({"led_color": "#00FF00", "unknown_thing": 1}, "Unknown setting 'unknown_thing'"),
    ]
    async with aiohttp.ClientSession(headers=headers) as http:
        for body, message in refused:
            async with http.post(base, json=body) as resp:
                answer = await resp.json()
            assert resp.status == 400, body
            assert answer["error"] is True
            assert message in answer["message"]
        assert "led_color" not in world.cloud.devices[FRONT].settings  # nothing half-stored
        # The seed's own examples are accepted and answered as the seed shows.
        chimes = {
            "indoor_chime": False,
            "digital_chime": False,
            "outdoor_chime": False,
            "skybell_chime": False,
        }
        zones = [[{"ignore": n == 3, "sensitivity": 100} for n in range(3)] for _ in range(2)]
        grid = {"motion_zone_config": {"x": 3, "y": 2, "zones": zones, "threshold": 1}}
        for body in ({"led_color": "#FF00FF"}, chimes, grid, {"hmbd_sensitivity": 0xFFFFFFFF}):
            async with http.post(base, json=body) as resp:
                answer = await resp.json()
            assert (resp.status, answer) == (200, {"error": False, "message": "OK", "data": {}})
        async with http.get(f"{world.base_url}/api/v5/devices/{FRONT}/") as resp:
            device = (await resp.json())["data"]
    assert device["settings"]["led_color"] == "#FF00FF"
    assert device["settings"]["skybell_chime"] is False
    assert device["settings"]["motion_zone_config"]["x"] == 3
    assert device["settings"]["speaker_volume"] == 0  # a default never changed


async def test_an_offline_doorbell_gets_its_settings_when_back(
    make_bridge: BridgeFactory, world: SimWorld
) -> None:
    # Seed: the cloud saves the change, and a device that is not online fetches it once back;
    # only an online doorbell that does not answer in time is a 599.
    bridge = await make_bridge()
    world.cloud.devices[FRONT].online = False
    status, body, _ = await _post(_url(bridge, "front-door"), json={"chime_file": "home.wav"})
    assert (status, body["settings"]["chime_file"]) == (200, "home.wav")
    assert world.cloud.devices[FRONT].settings["chime_file"] == "home.wav"
