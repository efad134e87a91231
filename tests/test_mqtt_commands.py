"""MQTT command payloads: HA's defaults parse, anything else is one line of error (property
tests: any bytes give a value or a CommandError), and the [mqtt] options load and check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import load_settings
from bridge.errors import ConfigError
from bridge.mqtt.commands import CommandError, Control, parse_command
from bridge.mqtt.options import broker_address, instance_id

SWITCH = Control("motion_detection", "switch")
BUTTON = Control("reboot", "button")
SELECT = Control("chime_file", "select", options=("1.wav", "home.wav"))
NUMBER = Control("motion_sensitivity", "number", minimum=0, maximum=1000)
LIGHT = Control("led", "light")
CONTROLS = [SWITCH, BUTTON, SELECT, NUMBER, LIGHT]


def test_home_assistant_payloads_parse() -> None:
    assert parse_command(SWITCH, b"ON") is True
    assert parse_command(SWITCH, b"OFF") is False
    assert parse_command(BUTTON, b"PRESS") is None
    assert parse_command(SELECT, b"home.wav") == "home.wav"
    assert parse_command(NUMBER, b"50") == 50
    assert parse_command(NUMBER, b"50.0") == 50  # HA's number entity sends floats
    assert parse_command(LIGHT, b'{"state": "OFF"}') == {"led": False}
    assert parse_command(LIGHT, b'{"state": "ON"}') == {"led": True}
    assert parse_command(LIGHT, b'{"state":"ON","color":{"r":255,"g":16,"b":0}}') == {
        "led": True,
        "led_color": "#FF1000",
    }


@pytest.mark.parametrize(
    ("control", "payload", "needle"),
    [
        (LIGHT, b'{"state":"ON","color":"purple"}', "unknown colour"),
        (LIGHT, b'{"state":"ON","color":{"r":300,"g":0,"b":0}}', "unknown colour"),
        (LIGHT, b'{"state":"ON","color":{"h":30,"s":90}}', "unknown colour"),
        (LIGHT, b'{"state":"ON","color":{"r":0,"g":0,"b":0}}', "black is the LED off"),
        (LIGHT, b"ON", "expected a JSON object"),
        (LIGHT, b'{"state":"BLINK"}', "state must be ON or OFF"),
        (NUMBER, b"1001", "out of range 0 to 1000"),
        (NUMBER, b"-1", "out of range"),
        (NUMBER, b"12.5", "whole number"),
        (NUMBER, b"nan", "whole number"),
        (NUMBER, b"lots", "expected a number"),
        (SWITCH, b'{"state": "ON"}', "not JSON"),
        (SWITCH, b"maybe", "expected ON or OFF"),
        (SELECT, b'"home.wav"', "not JSON"),
        (SELECT, b"doorbell.mp3", "is not one of"),
        (BUTTON, b"now", "expected PRESS"),
        (BUTTON, b"", "expected PRESS"),
        (SWITCH, b"\xff\xfe", "not UTF-8"),
        (SWITCH, b"O" * 5000, "at most 1024"),
    ],
)
def test_bad_payloads_are_one_clear_line(control: Control, payload: bytes, needle: str) -> None:
    with pytest.raises(CommandError) as info:
        parse_command(control, payload)
    message = str(info.value)
    assert needle in message
    assert message.startswith(control.key + ": ")
    assert "\n" not in message


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CONTROLS), st.binary(max_size=2048))
def test_any_bytes_give_a_command_or_one_line_of_error(control: Control, payload: bytes) -> None:
    _check_one_line(_refusal(control, payload))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(CONTROLS),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    ),
)
def test_any_json_gives_a_command_or_one_line_of_error(control: Control, value: object) -> None:
    payload = json.dumps({"state": "ON", "color": value} if control is LIGHT else value).encode()
    _check_one_line(_refusal(control, payload))


def _refusal(control: Control, payload: bytes) -> str | None:
    """The error message for a payload, or None when it parses."""
    try:
        parse_command(control, payload)
    except CommandError as err:
        return str(err)
    return None


def _check_one_line(message: str | None) -> None:
    if message is None:
        return
    assert message.isprintable()
    assert "\n" not in message
    assert "\r" not in message
    assert len(message) < 300


def test_mqtt_options_load_from_toml_and_env(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("broker-s3cret\n")
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[mqtt]\nenabled = true\nurl = "mqtts://broker.lan"\nusername = "bridge"\n'
        f'password_file = "{secret}"\ntopic = "home/door"\n'
    )
    settings_ = load_settings(path, {"SKYBELL_BRIDGE_MQTT_DING_SECONDS": "3"})
    mqtt = settings_.mqtt
    assert mqtt.password is not None
    assert mqtt.password.reveal() == "broker-s3cret"
    assert mqtt.ding_seconds == 3
    assert broker_address(mqtt.url) == ("broker.lan", 8883, True)
    assert instance_id(mqtt) == "skybell-bridge-home_door"
    assert instance_id(load_settings(None, {}).mqtt) == "skybell-bridge"


def test_an_empty_password_file_is_no_password(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[mqtt]\nenabled = true\nusername = ""\npassword_file = ""\n')
    assert load_settings(path, {}).mqtt.password is None


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SKYBELL_BRIDGE_MQTT_URL": "http://broker"}, "mqtt.url"),
        ({"SKYBELL_BRIDGE_MQTT_URL": "mqtt://user:pw@broker"}, "mqtt.url"),
        ({"SKYBELL_BRIDGE_MQTT_URL": "mqtt://broker:99999"}, "mqtt.url"),
        ({"SKYBELL_BRIDGE_MQTT_TOPIC": "skybell/#"}, "mqtt.topic"),
        ({"SKYBELL_BRIDGE_MQTT_TOPIC": "a//b"}, "mqtt.topic"),
        ({"SKYBELL_BRIDGE_MQTT_DISCOVERY_PREFIX": ""}, "mqtt.discovery_prefix"),
        ({"SKYBELL_BRIDGE_MQTT_PASSWORD": "pw"}, "mqtt.username"),
        ({"SKYBELL_BRIDGE_MQTT_DING_SECONDS": "0"}, "mqtt.ding_seconds"),
    ],
)
def test_bad_mqtt_options_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"SKYBELL_BRIDGE_MQTT_ENABLED": "true", **env})
    assert info.value.key == key
