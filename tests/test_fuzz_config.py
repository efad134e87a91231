"""Fuzzing the config loader (issue 12): any file content and any environment values give
Settings or one ConfigError naming the key, never another exception."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import typing
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import ENV_PREFIX, Settings, load_settings
from bridge.errors import ConfigError
from bridge.options import config_fields

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _keys() -> list[tuple[str, str]]:
    """(section, key) for every flat key the loader knows."""
    out = []
    hints = typing.get_type_hints(Settings)
    for section in dataclasses.fields(Settings):
        if section.name in ("rules", "publish"):  # arrays of tables, checked by their parsers
            continue
        cls = hints[section.name]
        for f in config_fields(cls):
            if typing.get_origin(typing.get_type_hints(cls)[f.name]) is not dict:
                out.append((section.name, f.name))
    return out


KEYS = _keys()
# Keys whose values become paths, secrets read from files, or addresses: they reach the OS.
_OS_KEYS = [
    ("storage", "clips_dir"),
    ("switchbot", "budget_path"),
    ("server", "host"),
    ("server", "rtsp_host"),
    ("events", "udp_host"),
]
_SECRET_FILES = ["SERVER_PASSWORD", "SKYBELL_API_KEY", "SKYBELL_PASSWORD", "SWITCHBOT_TOKEN"]
_os_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["~", "~nosuchuser-xyz", "~/x", "~nosuchuser-xyz/clips", "/dev/null/x", ".", ""]
    ),
    st.sampled_from(["/proc/self/mem", "/", "/root", "\udcff", "a" * 5000]),
)
_SECTIONS = sorted({s for s, _ in KEYS})

# TOML values of every kind, including the ones a careless edit produces.
_toml_values = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: (
            "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf") if math.isinf(f) else repr(f)
        )
    ),
    st.sampled_from(["true", "false", "[]", "[1, 2]", "{}", "{ a = 1 }", "1979-05-27", '""']),
    st.text(max_size=30).map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(['"~nosuchuser-xyz/clips"', '"/dev/null/x"', '"\\u0000"', '"0.0.0.0"']),
)


def _line(key: tuple[str, str], value: str) -> str:
    return f"[{key[0]}]\n{key[1]} = {value}\n"


_structured = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(KEYS), _toml_values).map(lambda kv: _line(*kv)),
        st.tuples(st.sampled_from(KEYS), _toml_values).map(
            lambda kv: f"[{kv[0][0]}]\n{kv[0][1]}_file = {kv[1]}\n"
        ),
        st.sampled_from(
            [
                "[[rules]]\non = 1\n",
                '[[rules]]\non = "doorbell"\ndo = []\n',
                "rules = 5\n",
                "[record.devices.x]\npreroll = 1\n",
                "[record.devices]\nx = 1\n",
                "server = 1\n",
                "[nosuch]\n",
            ]
        ),
        st.sampled_from(_SECTIONS).map(lambda s: f"[{s}]\nnosuch = 1\n"),
    ),
    max_size=4,
).map("".join)

# Whole files: arbitrary text and bytes (not UTF-8, NULs), and key = value lines.
_files = st.one_of(st.text(max_size=300), st.binary(max_size=300), _structured)


def _load(content: str | bytes, env: dict[str, str]) -> Settings | ConfigError:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "bridge.toml")
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogateescape")
        try:
            return load_settings(path, env=env)
        except ConfigError as err:
            return err


def _check(result: Settings | ConfigError) -> None:
    if isinstance(result, ConfigError):
        message = str(result)
        assert message
        assert "\n" not in message.strip(), "one line"


@FUZZ
@given(_files)
def test_fuzz_config_file_gives_settings_or_a_config_error(content: str | bytes) -> None:
    _check(_load(content, {}))


_env_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "1_000", " 5 ", "", "~nosuchuser"]),
    st.integers(-(10**30), 10**30).map(str),
)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(KEYS), _env_values, max_size=4)
    | st.dictionaries(st.sampled_from(_OS_KEYS), _os_text, max_size=3),
    st.dictionaries(st.sampled_from(_SECRET_FILES), _os_text, max_size=2),
    _structured,
)
def test_fuzz_config_env_gives_settings_or_a_config_error(
    values: dict[tuple[str, str], str], secret_files: dict[str, str], content: str
) -> None:
    # A real environment cannot hold NUL; anything else it can, undecodable bytes included.
    env = {f"{ENV_PREFIX}{s}_{k}".upper(): v for (s, k), v in values.items()}
    env |= {f"{ENV_PREFIX}{name}_FILE": path for name, path in secret_files.items()}
    _check(_load(content, {k: v.replace("\x00", "") for k, v in env.items()}))


@FUZZ
@given(st.sampled_from(_OS_KEYS), _os_text)
def test_fuzz_config_paths_and_hosts_in_the_file(key: tuple[str, str], value: str) -> None:
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    _check(_load(_line(key, quoted), {}))
