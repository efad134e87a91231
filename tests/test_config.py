"""Settings: TOML, environment overrides, secret files, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from bridge.config import Settings, load_settings
from bridge.errors import ConfigError
from bridge.options import config_fields
from bridge.record.options import DeviceRecordOptions
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
        # The ranges of a package's own options (MjpegOptions), checked here once.
        ("[mjpeg]\nquality = 1\n", {}, "mjpeg.quality", "an integer from 2 to 31, got 1"),
        ("[mjpeg]\nfps = 0\n", {}, "mjpeg.fps", "a number from 0.2 to 30, got 0"),
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
        if section.name in ("rules", "publish"):  # arrays of tables, not sections
            assert f"# [[{section.name}]]" in text
            continue
        assert f"[{section.name}]" in text
        for key in config_fields(hints[section.name]):
            pattern = (
                rf"^#? ?\[{section.name}\.{key.name}\."
                if (section.name, key.name) == ("record", "devices")
                else ""
            )
            assert re.search(pattern or rf"^#? ?{key.name}(_file)? = ", text, re.M), (
                f"{section.name}.{key.name}"
            )


def _number_keys() -> list[tuple[str, str, type]]:
    """Every flat int/float key as (section, key, type), found from the dataclasses."""
    found = []
    hints = typing.get_type_hints(Settings)
    for section in dataclasses.fields(Settings):
        if section.name in ("rules", "publish"):
            continue
        cls = hints[section.name]
        types = typing.get_type_hints(cls)
        for name, typ in ((f.name, types[f.name]) for f in config_fields(cls)):
            args = set(typing.get_args(typ)) - {type(None)} or {typ}
            for kind in (float, int):
                if args == {kind}:
                    found.append((section.name, name, kind))
    return found


def test_finding_9_nan_and_infinity_rejected_for_every_number_key(tmp_path: Path) -> None:
    keys = _number_keys()
    assert ("streams", "idle_timeout", float) in keys
    assert ("events", "poll_backfill", float) in keys
    assert ("record", "max_total_gb", float) in keys  # float | None too
    for section, name, _ in keys:
        for literal in ("nan", "inf", "-inf", "+inf"):
            with pytest.raises(ConfigError) as info:
                load_settings(write(tmp_path, f"[{section}]\n{name} = {literal}\n"), env={})
            assert info.value.key == f"{section}.{name}"
            env_name = f"SKYBELL_BRIDGE_{section}_{name}".upper()
            for text in (literal, literal.upper(), "Infinity"):
                with pytest.raises(ConfigError) as info:
                    load_settings(env={env_name: text})
                assert info.value.key == f"{section}.{name}"


def test_finding_9_per_device_overrides_reject_nan_too(tmp_path: Path) -> None:
    path = write(tmp_path, "[record.devices.front-door]\nmax_gb = nan\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.key == "record.devices.front-door.max_gb"
    assert "not NaN or infinity" in str(info.value)


def test_finding_9_every_number_key_has_an_upper_bound() -> None:
    # An open-ended key takes 1e300 and overflows a timer, a date or a byte count later on.
    hints = typing.get_type_hints(Settings)
    sections = [(s, hints[s]) for s, _, _ in _number_keys()] + [
        ("record.devices.NAME", DeviceRecordOptions)
    ]
    for section, cls in sections:
        for f in config_fields(cls):
            if f.type in ("int", "float", "float | None", "int | None"):
                _, hi = f.metadata.get("range", (None, None))
                assert hi is not None, f"{section}.{f.name} has no upper bound"


def test_finding_9_absurd_min_free_mb_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "[record]\nmin_free_mb = 1099511627776\n"), env={})
    assert info.value.key == "record.min_free_mb"
    assert "from 0 to 10000000" in str(info.value)  # a bound a person can read, not 1e+07
    assert load_settings(env={"SKYBELL_BRIDGE_RECORD_MIN_FREE_MB": "10000000"})


def test_finding_9_toml_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_bytes(b'[server]\nhost = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.key == "config file"
    assert "not UTF-8" in str(info.value)
    path.write_bytes("[server]\nport = 1\n".encode("utf-16"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(path, env={})


def test_finding_9_secret_file_not_utf8(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xff\xfepass")
    env = {
        "SKYBELL_BRIDGE_SERVER_USERNAME": "a",
        "SKYBELL_BRIDGE_SERVER_PASSWORD_FILE": str(secret),
    }
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert info.value.key == "server.password"
    assert "not UTF-8" in str(info.value)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SKYBELL_BRIDGE_SERVER_HOST": "127.0.0.1\x00.evil"}, "server.host"),
        ({"SKYBELL_BRIDGE_STORAGE_CLIPS_DIR": "clips\x00"}, "storage.clips_dir"),
        # Undecodable bytes in the environment arrive as lone surrogates.
        ({"SKYBELL_BRIDGE_SERVER_USERNAME": "adm\udcffin"}, "server.username"),
        ({"SKYBELL_BRIDGE_SERVER_PASSWORD": "pw\udcff-more"}, "server.password"),
    ],
)
def test_finding_9_nul_and_undecodable_text_rejected(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert info.value.key == key
    if key == "server.password":
        assert "more" not in str(info.value)  # a secret is never echoed, even a broken one


def test_finding_1_empty_password_is_no_password() -> None:
    settings = load_settings(env={"SKYBELL_BRIDGE_SERVER_PASSWORD": ""})
    assert settings.server.password is None
