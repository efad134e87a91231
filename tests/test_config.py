"""Settings: TOML, environment overrides, secret files, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from bridge.config import Settings, load_settings
from bridge.errors import ConfigError
from bridge.redact import Secret


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    settings = load_settings(env={})
    assert settings.server.port == 1984
    assert settings.server.rtsp_port == 8554
    assert settings.server.host == "127.0.0.1"
    assert settings.log.format == "text"
    assert not settings.has_credentials


def test_file_then_env_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[skybell]\napi_url = "http://127.0.0.1:9/api/v5"\napi_key = "file-key-123"\n'
        '[server]\nport = 2000\n[storage]\nclips_dir = "/tmp/clips"\n[log]\nformat = "json"\n',
    )
    env = {"SKYBELL_BRIDGE_SERVER_PORT": "3000", "SKYBELL_BRIDGE_LOG_LEVEL": "debug"}
    settings = load_settings(path, env=env)
    assert settings.server.port == 3000
    assert settings.log.level == "debug"
    assert settings.log.format == "json"
    assert settings.storage.clips_dir == Path("/tmp/clips")
    assert settings.skybell.api_key == Secret("file-key-123")
    assert settings.has_credentials


def test_config_path_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 4321\n")
    settings = load_settings(env={"SKYBELL_BRIDGE_CONFIG": str(path)})
    assert settings.server.port == 4321


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("correct horse battery\n")
    path = write(tmp_path, f'[skybell]\nemail = "a@b.c"\npassword_file = "{secret}"\n')
    settings = load_settings(path, env={})
    assert settings.skybell.password is not None
    assert settings.skybell.password.reveal() == "correct horse battery"
    env_settings = load_settings(
        env={
            "SKYBELL_BRIDGE_SKYBELL_EMAIL": "a@b.c",
            "SKYBELL_BRIDGE_SKYBELL_PASSWORD_FILE": str(secret),
        }
    )
    assert env_settings.has_credentials


def test_secrets_hidden_from_repr() -> None:
    settings = load_settings(env={"SKYBELL_BRIDGE_SKYBELL_API_KEY": "super-secret-api-key"})
    assert "super-secret-api-key" not in repr(settings)
    assert "super-secret-api-key" not in str(settings.skybell.api_key)


@pytest.mark.parametrize(
    ("toml", "env", "key", "needle"),
    [
        ("[server]\nport = 70000\n", {}, "server.port", "an integer from 0 to 65535, got 70000"),
        ("", {"SKYBELL_BRIDGE_SERVER_PORT": "abc"}, "server.port", "SKYBELL_BRIDGE_SERVER_PORT"),
        ('[server]\nport = "80"\n', {}, "server.port", "an integer"),
        ('[log]\nformat = "xml"\n', {}, "log.format", "one of text, json"),
        ('[log]\nlevel = "loud"\n', {}, "log.level", "one of debug, info, warning, error"),
        ("[server]\nprot = 1\n", {}, "server.prot", "unknown key; accepted keys:"),
        ("[srever]\n", {}, "srever", "unknown section"),
        ('[skybell]\napi_url = "ftp://x"\n', {}, "skybell.api_url", "http:// or https://"),
        ('[skybell]\nemail = "a@b.c"\n', {}, "skybell.password", "go together"),
        ("[skybell]\ntimeout = 0\n", {}, "skybell.timeout", "a number from 1 to 300"),
        ("server = 3\n", {}, "server", "must be a table"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], key: str, needle: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml), env=env)
    assert info.value.key == key
    assert needle in str(info.value)


def test_secret_values_not_echoed_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "[skybell]\napi_key = 12345678\n"), env={})
    assert "12345678" not in str(info.value)


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[server\nport = 1"), env={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_example_file_loads_and_names_every_key() -> None:
    example = Path(__file__).parents[1] / "bridge.example.toml"
    load_settings(example, {})
    text = example.read_text()
    hints = typing.get_type_hints(Settings)
    for section in dataclasses.fields(Settings):
        if section.name == "rules":
            assert "# [[rules]]" in text
            continue
        assert f"[{section.name}]" in text
        for key in dataclasses.fields(hints[section.name]):
            pattern = rf"^#? ?\[{section.name}\.{key.name}\." if key.name == "devices" else ""
            assert re.search(pattern or rf"^#? ?{key.name}(_file)? = ", text, re.M), (
                f"{section.name}.{key.name}"
            )
